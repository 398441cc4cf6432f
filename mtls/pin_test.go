package mtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/certgen"
)

// rogueAttack writes, behind PublishCA's back as a stolen /certs/
// credential would, a bundle holding the real CA and a rogue one, then an
// identity "api" from the rogue CA, and returns the rogue leaf.
func rogueAttack(t *testing.T, e *env) (*certgen.CA, *certgen.Leaf, int64) {
	t.Helper()
	rogue := certgen.NewCA(t, "rogue")
	leaf := rogue.Peer(t, []string{apiName})
	e.put(CAKey(""), string(e.ca.PEM)+string(rogue.PEM))
	sealed, err := e.kr.Seal(KeyKey("", "evil"), leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	rev := e.put(CertKey("", "evil"), string(leaf.CertPEM), KeyKey("", "evil"), string(sealed))
	return rogue, leaf, rev
}

// TestRogueCAIsRefusedUnderPinning: with a pinned trust anchor, a rogue CA
// written to etcd is refused, logged and counted; the last good bundle
// stays, so a certificate from the rogue CA is refused by the handshakes.
// Without pins, the same write is accepted, with a warning.
func TestRogueCAIsRefusedUnderPinning(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	reg := prometheus.NewRegistry()
	pinned := e.store(WithTrustAnchors(e.ca.Cert), WithRegisterer(reg))
	unpinned := e.store()
	ready(t, pinned, "api", "web")
	ready(t, unpinned, "api", "web")
	srvPinned := serve(t, pinned.ServerConfig("api"))
	srvUnpinned := serve(t, unpinned.ServerConfig("api"))
	if strings.Contains(e.logs.String(), "CA bundle loaded without pinned") != true {
		t.Error("the unpinned store did not warn that etcd decides whom it trusts")
	}

	_, rogueLeaf, rev := rogueAttack(t, e)
	waitRev(t, pinned, rev)
	waitRev(t, unpinned, rev)

	if rej := pinned.CARejected(); rej == nil || rej.Reason != ReasonUnpinned || !errors.Is(rej, ErrUnpinned) {
		t.Fatalf("pinned store: CARejected() = %v, want unpinned", rej)
	}
	if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonUnpinned)); got != 1 {
		t.Errorf("rejected_total{reason=unpinned} = %v, want 1", got)
	}
	if !pinned.CAPool().Equal(certgen.Pool(e.ca)) {
		t.Fatal("the pinned store took the rogue bundle")
	}
	if !strings.Contains(e.logs.String(), "does not chain to a trust anchor") {
		t.Error("the refusal is not logged with its cause")
	}
	if _, err := pinned.Certificate("evil"); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("pinned store serves the rogue identity: %v", err)
	}
	// A client presenting the rogue leaf.
	rogueClient := httpClient(t, rogueConfig(t, rogueLeaf), true)
	if _, err := get(rogueClient, srvPinned.addr); err == nil {
		t.Fatal("the pinned server accepted a client from the rogue CA")
	}
	// Without pins, the rogue CA is trusted: what the pins prevent.
	if unpinned.CARejected() != nil || unpinned.CAPool().Equal(certgen.Pool(e.ca)) {
		t.Fatal("the unpinned store refused the bundle; the test shows nothing")
	}
	if _, err := get(rogueClient, srvUnpinned.addr); err != nil {
		t.Fatalf("the unpinned server refused the rogue client (%v); the test shows nothing", err)
	}
	// The pinned store keeps serving with its good material.
	mustGet(t, httpClient(t, pinned.ClientConfig("web", apiName), true), srvPinned.addr)
}

// rogueConfig presents leaf and trusts anything: the attacker's client.
func rogueConfig(t *testing.T, leaf *certgen.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// TestAnchorsAcceptIntermediatesAndRotation: a bundle of CAs signed by
// the anchor (intermediates) passes, as does a new CA from the anchor
// during a rotation; an expired CA kept in the bundle does not make it
// fail.
func TestAnchorsAcceptIntermediatesAndRotation(t *testing.T) {
	root := certgen.NewCA(t, "root")
	inter1 := subCA(t, root, "issuing-1")
	inter2 := subCA(t, root, "issuing-2")
	old := subCA(t, root, "issuing-0", certgen.Expired())
	p, err := newPins([]*x509.Certificate{root.Cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name   string
		bundle []byte
		ok     bool
	}{
		{"the anchor itself", root.PEM, true},
		{"an intermediate", inter1.PEM, true},
		{"two intermediates (rotation)", append(bytes.Clone(inter1.PEM), inter2.PEM...), true},
		{"an expired intermediate kept", append(bytes.Clone(inter1.PEM), old.PEM...), true},
		{"a rogue CA beside a good one", append(bytes.Clone(inter1.PEM), certgen.NewCA(t, "rogue").PEM...), false},
	} {
		b, verr := parseBundle(tc.bundle, now)
		if verr != nil {
			t.Fatalf("%s: %v", tc.name, verr)
		}
		_, verr = p.check(CAKey(""), b, nil, now)
		if (verr == nil) != tc.ok {
			t.Errorf("%s: check = %v, want ok=%v", tc.name, verr, tc.ok)
		}
	}
}

// subCA issues an intermediate CA from parent.
func subCA(t *testing.T, parent *certgen.CA, name string, opts ...certgen.Option) *certgen.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certgen.CA{Cert: c, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// TestSignedBundles: with a pinned signing key, a bundle is accepted only
// with a valid signature at <prefix>/ca.sig: PublishCA writes both in one
// transaction; a rogue bundle without a signature, with a signature of
// another bundle, with a signature for another prefix or by another key is
// refused; an older signed bundle written again (a replay) is refused.
func TestSignedBundles(t *testing.T) {
	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			key := signingKey(t, kind)
			e := newEnv(t) // publishes ca-1 unsigned
			e.publish("api", e.ca.Peer(t, []string{apiName}))
			reg := prometheus.NewRegistry()
			signers := WithBundleSigners(key.Public())
			ctx := ctxT(t, 10*time.Second)

			// The unsigned bundle in etcd is refused by a pinned Store.
			s := e.store(signers, WithRegisterer(reg))
			if rej := s.CARejected(); rej == nil || rej.Reason != ReasonUnpinned {
				t.Fatalf("unsigned bundle: CARejected() = %v, want unpinned", rej)
			}
			// PublishCA with the signing key: accepted.
			rev, err := PublishCA(ctx, e.cli, e.ca.PEM, WithBundleSigningKey(key), signers)
			if err != nil {
				t.Fatal(err)
			}
			waitRev(t, s, rev)
			ready(t, s, "api")
			signedAt := s.cur.Load().ca.signedAt

			ca2 := certgen.NewCA(t, "ca-2")
			rogue := certgen.NewCA(t, "rogue")
			other := signingKey(t, kind)
			sigOf := func(k crypto.Signer, bundle []byte, opts ...Option) string {
				sig, err := SignBundle(k, bundle, opts...)
				if err != nil {
					t.Fatal(err)
				}
				return string(sig)
			}
			both := string(e.ca.PEM) + string(rogue.PEM)
			for _, tc := range []struct {
				name string
				kvs  []string
				why  string
			}{
				{"a new bundle beside the old signature", []string{CAKey(""), both}, "another bundle"},
				{"the signature of another bundle", []string{CAKey(""), both, CASignatureKey(""), sigOf(key, e.ca.PEM)}, "another bundle"},
				{"a signature for another prefix", []string{CAKey(""), both, CASignatureKey(""), sigOf(key, []byte(both), WithPrefix("/other"))}, "does not verify"},
				{"a signature by another key", []string{CAKey(""), both, CASignatureKey(""), sigOf(other, []byte(both))}, "not pinned"},
				{"a signature that is not JSON", []string{CAKey(""), both, CASignatureKey(""), "garbage"}, "signature"},
				{"an older signed bundle replayed", []string{CAKey(""), string(e.ca.PEM) + string(ca2.PEM), CASignatureKey(""),
					sigOf(key, []byte(string(e.ca.PEM)+string(ca2.PEM)), WithClock(func() time.Time { return signedAt.Add(-time.Hour) }))}, "before the bundle in use"},
				{"no signature", nil, "no signature"},
			} {
				if tc.kvs == nil {
					del, err := e.cli.Delete(ctx, CASignatureKey(""))
					if err != nil {
						t.Fatal(err)
					}
					waitRev(t, s, del.Header.Revision)
					tc.kvs = []string{CAKey(""), both + "\n"}
				}
				before := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonUnpinned))
				waitRev(t, s, e.put(tc.kvs...))
				rej := s.CARejected()
				if rej == nil || rej.Reason != ReasonUnpinned || !strings.Contains(rej.Error(), tc.why) {
					t.Errorf("%s: CARejected() = %v, want unpinned naming %q", tc.name, rej, tc.why)
				}
				if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonUnpinned)); got != before+1 {
					t.Errorf("%s: rejected_total{unpinned} = %v, want %v", tc.name, got, before+1)
				}
				if !s.CAPool().Equal(certgen.Pool(e.ca)) {
					t.Fatalf("%s: the bundle in use changed", tc.name)
				}
			}
			// PublishCA under the pins refuses to write a rogue bundle
			// without a good signature, and writes nothing.
			before, _ := e.cli.Get(ctx, CAKey(""))
			if _, err := PublishCA(ctx, e.cli, []byte(both), signers); !errors.Is(err, ErrUnpinned) {
				t.Fatalf("PublishCA of an unsigned bundle under pins: %v, want ErrUnpinned", err)
			}
			if _, err := PublishCA(ctx, e.cli, []byte(both), signers, WithBundleSigningKey(other)); !errors.Is(err, ErrUnpinned) {
				t.Fatalf("PublishCA signed by another key under pins: %v, want ErrUnpinned", err)
			}
			after, _ := e.cli.Get(ctx, CAKey(""))
			if after.Kvs[0].ModRevision != before.Kvs[0].ModRevision {
				t.Fatal("a refused PublishCA wrote the bundle")
			}
			// A new bundle signed now (CA rotation) is accepted, with a
			// signature made offline.
			next := append(bytes.Clone(e.ca.PEM), ca2.PEM...)
			rev, err = PublishCA(ctx, e.cli, next, WithBundleSignature([]byte(sigOf(key, next))), signers)
			if err != nil {
				t.Fatal(err)
			}
			waitRev(t, s, rev)
			if !s.CAPool().Equal(certgen.Pool(e.ca, ca2)) {
				t.Fatal("the signed rotation bundle was not taken")
			}
			// An unsigned PublishCA (no pins given to it) deletes the
			// stale signature along with writing the bundle.
			if _, err := PublishCA(ctx, e.cli, e.ca.PEM); err != nil {
				t.Fatal(err)
			}
			if got, _ := e.cli.Get(ctx, CASignatureKey("")); len(got.Kvs) != 0 {
				t.Fatal("a stale signature was left beside an unsigned bundle")
			}
		})
	}
}

func signingKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPinOptionsAreValidated: a trust anchor that is not a CA is an
// error of NewStore, not a silent "unpinned".
func TestPinOptionsAreValidated(t *testing.T) {
	e := newEnv(t)
	leaf := e.ca.Peer(t, []string{apiName})
	if _, err := NewStore(ctxT(t, 5*time.Second), e.cli, WithTrustAnchors(leaf.Cert)); err == nil {
		t.Fatal("NewStore accepted a leaf as trust anchor")
	}
	if _, err := NewStore(ctxT(t, 5*time.Second), e.cli, WithBundleSigners("not a key")); err == nil {
		t.Fatal("NewStore accepted a bundle signer that is not a public key")
	}
}
