package mtls

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
)

// fuzzKeyring holds a fixed key-encryption key for the fuzz targets.
func fuzzKeyring(t testing.TB) *Keyring {
	k, err := NewKEK("fuzz", bytes.Repeat([]byte{0x42}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

const fuzzKey = "/certs/fuzz/tls.key"

// FuzzOpenEnvelope feeds arbitrary values to the envelope decoder. It must
// never panic; a value that parses must marshal back to itself; and Open
// must succeed only for the envelope that Seal produced, byte for byte
// (any change to the header, the nonces or the ciphertexts fails
// authentication).
func FuzzOpenEnvelope(f *testing.F) {
	kr := fuzzKeyring(f)
	// Fixed, not sealed here: fuzz workers run in other processes.
	sealed, secret := readFixture(f, fixtureEnvelope), readFixture(f, fixtureLeafKey)
	f.Add(sealed)
	f.Add(sealed[:len(sealed)-1])
	f.Add(sealed[:20])
	f.Add([]byte(envelopeMagic))
	f.Add([]byte("SRKE\x01\x00"))
	f.Add([]byte("SRKE\x02\x04fuzz"))
	f.Add(append([]byte("SRKE\x01\xff"), bytes.Repeat([]byte{'a'}, 300)...))
	f.Add(secret)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, value []byte) {
		e, err := parseEnvelope(value)
		if err == nil && !bytes.Equal(e.marshal(), value) {
			t.Fatalf("parse/marshal does not round-trip")
		}
		got, err := kr.Open(fuzzKey, value)
		if err == nil {
			if !bytes.Equal(value, sealed) {
				t.Fatalf("a value other than the sealed one opened")
			}
			if !bytes.Equal(got, secret) {
				t.Fatalf("opened to the wrong plaintext")
			}
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Fatalf("error holds plaintext: %v", err)
		}
	})
}

// FuzzDecodeIdentity feeds arbitrary certificate and key values through
// the Store's validation path (key value decoding, PEM parsing, key match,
// validity, chain). It must never panic; what it accepts must be a usable
// pair that chains to the CA; its errors never echo PEM.
func FuzzDecodeIdentity(f *testing.F) {
	// The CA and the good pair are fixed: fuzz workers run in other
	// processes and must validate against the same CA as the seeds.
	caPEM, crtPEM, keyPEM := readFixture(f, fixtureCA), readFixture(f, fixtureLeaf), readFixture(f, fixtureLeafKey)
	bundle, verr := parseBundle(caPEM, time.Now())
	if verr != nil {
		f.Fatal(verr)
	}
	kr := fuzzKeyring(f)
	sealed := readFixture(f, fixtureEnvelope)
	f.Add(crtPEM, sealed)
	f.Add(crtPEM, keyPEM)
	f.Add(crtPEM, certgen.NewKeyPEM(f))
	f.Add(append(bytes.Clone(crtPEM), caPEM...), keyPEM)
	f.Add(keyPEM, crtPEM)
	f.Add(caPEM, keyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, crt, key []byte) {
		o := newOptions([]Option{WithKeyring(kr), WithAllowPlaintextKeys(true)})
		id, verr := buildIdentity(&o, "fuzz", rawValue{crt, 1}, rawValue{key, 2}, bundle, nil, now)
		if verr != nil {
			if verr.Reason == "" || verr.Key == "" {
				t.Fatalf("refusal without reason or key: %v", verr)
			}
			if msg := verr.Error(); strings.Contains(msg, "-----BEGIN") || strings.Contains(msg, "PRIVATE KEY") {
				t.Fatalf("error echoes PEM: %s", msg)
			}
			return
		}
		if id.cert.Leaf == nil || len(id.cert.Certificate) == 0 {
			t.Fatal("accepted without a leaf")
		}
		if verifyChain(id.cert, bundle, now) != nil {
			t.Fatal("accepted a chain that does not verify")
		}
		pub, ok := id.cert.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(id.cert.Leaf.PublicKey) {
			t.Fatal("accepted a key that does not match the leaf")
		}
	})
}

// FuzzParseBundle feeds arbitrary CA bundles to the bundle validation.
func FuzzParseBundle(f *testing.F) {
	caPEM := readFixture(f, fixtureCA)
	f.Add(caPEM)
	f.Add(append(bytes.Clone(caPEM), caPEM...))
	f.Add(readFixture(f, fixtureLeaf))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		b, verr := parseBundle(data, now)
		if verr != nil {
			if verr.Reason == "" {
				t.Fatal("refusal without reason")
			}
			return
		}
		if len(b.certs) == 0 || b.pool == nil {
			t.Fatal("accepted an empty bundle")
		}
		for _, c := range b.certs {
			if !c.IsCA {
				t.Fatal("accepted a bundle holding a non-CA")
			}
		}
	})
}

// FuzzRevocationList feeds arbitrary values to the revocation list
// decoder. It must never panic; a list it accepts has canonical entries,
// each with one selector, a reason and a time, and marshals back to a
// list that decodes to the same entries.
func FuzzRevocationList(f *testing.F) {
	f.Add([]byte(`{"revoked": []}`))
	f.Add([]byte(`{"revoked": [{"serial": "0A:1b", "reason": "stolen", "revoked_at": "2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"revoked": [{"spki_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "reason": "key compromise", "revoked_at": "2026-01-02T03:04:05+02:00"}]}`))
	f.Add([]byte(`{"revoked": [{"spki_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "reason": "x", "revoked_at": "2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"revoked": [{"serial": "1", "spki_sha256": "x", "reason": "x", "revoked_at": "2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"revoked": null}`))
	f.Add([]byte(`{"revoked": []} {}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, verr := parseRevocations(data)
		if verr != nil {
			if verr.Reason != ReasonMalformed {
				t.Fatalf("refusal for %v", verr.Reason)
			}
			return
		}
		for _, e := range l.entries {
			if (e.Serial == "") == (e.SPKISHA256 == "") || e.Reason == "" || e.RevokedAt.IsZero() {
				t.Fatalf("accepted entry %+v", e)
			}
			if n, err := e.normalize(); err != nil || n != e {
				t.Fatalf("entry %+v is not canonical: %+v, %v", e, n, err)
			}
		}
		out, err := json.Marshal(revocationFile{Revoked: l.entries})
		if err != nil {
			t.Fatal(err)
		}
		again, verr := parseRevocations(out)
		if verr != nil || len(again.entries) != len(l.entries) {
			t.Fatalf("the list does not survive a round trip: %v", verr)
		}
	})
}

// FuzzClientPolicy feeds arbitrary values to the client policy decoder:
// it never panics, and a policy it accepts allows a certificate only by
// one of its IDs.
func FuzzClientPolicy(f *testing.F) {
	f.Add([]byte(`{"allow": ["dns:web.test", "spiffe://example.org/ns/prod/sa/web"]}`))
	f.Add([]byte(`{"allow": ["*"]}`))
	f.Add([]byte(`{"allow": ["uri:https://id.example/x"]}`))
	f.Add([]byte(`{"allow": []}`))
	f.Add([]byte(`{"allow": ["web.test"]}`))
	f.Add([]byte(`{"allow": ["dns:a"], "deny": ["dns:b"]}`))
	f.Add([]byte(`not json`))
	leaf := readFixtureCert(f, fixtureLeaf) // DNS name fuzz.test
	f.Fuzz(func(t *testing.T, data []byte) {
		p, verr := parseClientPolicy(data)
		if verr != nil {
			return
		}
		if p.allows(leaf) && !p.any && !p.dns["fuzz.test"] {
			t.Fatalf("policy %s allows fuzz.test", data)
		}
	})
}

// FuzzBundleSignature feeds arbitrary signatures of a fixed bundle to the
// verifier: it never panics and accepts only the signature made by the
// pinned key for this bundle and etcd key.
func FuzzBundleSignature(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	bundle := readFixture(f, fixtureCA)
	signedAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good, err := SignBundle(key, bundle, WithClock(func() time.Time { return signedAt }))
	if err != nil {
		f.Fatal(err)
	}
	id, _ := keyID(key.Public())
	signers := map[string]crypto.PublicKey{id: key.Public()}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("2026-01-02"), []byte("2027-01-02"), 1))
	f.Add([]byte(`{"format": "smartroute-ca-sig/v1"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, sig []byte) {
		at, err := verifyBundleSignature(signers, CAKey(""), bundle, sig)
		if err != nil {
			return
		}
		var s BundleSignature
		if json.Unmarshal(sig, &s) != nil || !bytes.Equal(s.Signature, mustSig(t, good)) || !at.Equal(signedAt) {
			t.Fatalf("accepted a signature that is not the one made: %s", sig)
		}
	})
}

func mustSig(t *testing.T, doc []byte) []byte {
	var s BundleSignature
	if err := json.Unmarshal(doc, &s); err != nil {
		t.Fatal(err)
	}
	return s.Signature
}

func readFixtureCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	certs, err := decodeCertificates(readFixture(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
