package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/certgen"
)

func TestParseKEKAcceptsRawHexAndBase64(t *testing.T) {
	key := bytes.Repeat([]byte{0xA5}, KEKSize)
	for name, text := range map[string][]byte{
		"raw":              key,
		"hex with newline": []byte(hex.EncodeToString(key) + "\n"),
		"base64":           []byte(base64.StdEncoding.EncodeToString(key)),
		"base64url raw":    []byte(base64.RawURLEncoding.EncodeToString(key)),
	} {
		k, err := ParseKEK("k", text)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(k.key, key) {
			t.Errorf("%s: wrong key", name)
		}
	}
	for name, text := range map[string][]byte{
		"short":     key[:16],
		"bad hex":   []byte(strings.Repeat("zz", KEKSize)),
		"empty":     nil,
		"base64 16": []byte(base64.StdEncoding.EncodeToString(key[:16])),
	} {
		if _, err := ParseKEK("k", text); !errors.Is(err, ErrInvalidKEK) {
			t.Errorf("%s: err = %v, want ErrInvalidKEK", name, err)
		}
	}
	if _, err := ParseKEK("bad id/", key); !errors.Is(err, ErrInvalidKEK) {
		t.Errorf("bad ID: err = %v", err)
	}
}

func TestLoadKEKFromFileAndEnv(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KEKSize)
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadKEKFile("file", path)
	if err != nil || !bytes.Equal(f.key, key) {
		t.Fatalf("LoadKEKFile: %v", err)
	}
	t.Setenv("SMARTROUTE_TEST_KEK", base64.StdEncoding.EncodeToString(key))
	v, err := LoadKEKEnv("env", "SMARTROUTE_TEST_KEK")
	if err != nil || !bytes.Equal(v.key, key) {
		t.Fatalf("LoadKEKEnv: %v", err)
	}
	if _, err := LoadKEKEnv("env", "SMARTROUTE_TEST_KEK_UNSET"); !errors.Is(err, ErrInvalidKEK) {
		t.Fatalf("unset variable: err = %v", err)
	}
	if _, err := NewKeyring(f, KEK{id: "file", key: bytes.Repeat([]byte{8}, KEKSize)}); !errors.Is(err, ErrInvalidKEK) {
		t.Fatalf("two keys with one ID: err = %v", err)
	}
	if _, err := NewKeyring(KEK{}); !errors.Is(err, ErrInvalidKEK) {
		t.Fatalf("zero KEK: err = %v", err)
	}
}

func TestKEKAndKeyringNeverPrintTheKey(t *testing.T) {
	k, _ := GenerateKEK("kek-print")
	kr, _ := NewKeyring(k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), fmt.Sprint(kr), fmt.Sprintf("%+v %#v", kr, kr)} {
		if containsKey(s, k.key) {
			t.Fatalf("printed key material: %s", s)
		}
	}
}

// containsKey reports whether s holds key in a common text encoding.
func containsKey(s string, key []byte) bool {
	for _, enc := range []string{string(key), hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), fmt.Sprint(key), fmt.Sprintf("%x", key)} {
		if strings.Contains(s, enc) {
			return true
		}
	}
	return false
}

func TestSealOpensOnlyAtItsKeyWithItsKEK(t *testing.T) {
	k1, _ := GenerateKEK("k1")
	k2, _ := GenerateKEK("k2")
	kr1, _ := NewKeyring(k1)
	kr21, _ := NewKeyring(k2, k1)
	secret := []byte("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
	v, err := kr1.Seal("/certs/a/tls.key", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(v, []byte("secret")) {
		t.Fatal("the envelope holds the plaintext")
	}
	if id, ok := SealedBy(v); !ok || id != "k1" {
		t.Fatalf("SealedBy = %q, %v", id, ok)
	}
	for _, kr := range []*Keyring{kr1, kr21} {
		if got, err := kr.Open("/certs/a/tls.key", v); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Open with %v: %v", kr, err)
		}
	}
	if _, err := kr1.Open("/certs/b/tls.key", v); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open at another key: err = %v, want ErrUnseal", err)
	}
	kr2, _ := NewKeyring(k2)
	if _, err := kr2.Open("/certs/a/tls.key", v); !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("Open without its KEK: err = %v, want ErrUnknownKEK", err)
	}
	v2, _ := kr21.Seal("/certs/a/tls.key", secret)
	if id, _ := SealedBy(v2); id != "k2" {
		t.Fatalf("a keyring with primary k2 sealed with %q", id)
	}
	again, _ := kr1.Seal("/certs/a/tls.key", secret)
	if bytes.Equal(again, v) {
		t.Fatal("two seals of one key are identical: no fresh data key or nonce")
	}
}

// TestKEKRotation follows the documented procedure: add the new KEK to the
// Stores, seal with it, Reseal the rest, drop the old KEK.
func TestKEKRotation(t *testing.T) {
	e := newEnv(t)
	oldK := e.kek
	newK, _ := GenerateKEK("kek-2")
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))

	// 2. Every Store gets the new KEK, not as primary.
	both, _ := NewKeyring(oldK, newK)
	s := e.store(WithKeyring(both))
	ready(t, s, "api", "web")
	srv := serve(t, s.ServerConfig("api"))
	load := startLoad(t, httpClient(t, s.ClientConfig("web", apiName), true), srv.addr, 1)

	// 3. Writers seal with the new KEK.
	sealer, _ := NewKeyring(newK, oldK)
	api := e.ca.Peer(t, []string{apiName})
	rev, err := Publish(ctxT(t, 5*time.Second), e.cli, sealer, "api", api.CertPEM, api.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, rev)
	load.more(t, 5)
	if id := identityNamed(s, "api"); id.KEKID != "kek-2" || id.Certificate.Serial != serialHex(api.Cert) {
		t.Fatalf("api after publish with the new KEK: %+v", id)
	}

	// 4. Reseal what the old KEK sealed.
	n, err := Reseal(ctxT(t, 5*time.Second), e.cli, sealer)
	if err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v; want 1 key (web)", n, err)
	}
	waitFor(t, 30*time.Second, "every key in use is sealed with kek-2", func() bool {
		for _, id := range s.Identities() {
			if id.KEKID != "kek-2" {
				return false
			}
		}
		return true
	})
	load.more(t, 5)
	if n, err := Reseal(ctxT(t, 5*time.Second), e.cli, sealer); err != nil || n != 0 {
		t.Fatalf("second Reseal = %d, %v; want 0", n, err)
	}

	// 5. The old KEK can go: a Store with the new one only loads
	// everything, one with the old one only loads nothing.
	onlyNew, _ := NewKeyring(newK)
	ready(t, e.store(WithKeyring(onlyNew)), "api", "web")
	onlyOld, _ := NewKeyring(oldK)
	reg := prometheus.NewRegistry()
	stale := e.store(WithKeyring(onlyOld), WithRegisterer(reg))
	if _, err := stale.Certificate("web"); !errors.Is(err, ErrNoIdentity) || !errors.Is(err, ErrUnknownKEK) {
		t.Fatalf("a store with the old KEK only: err = %v, want ErrNoIdentity and ErrUnknownKEK", err)
	}
	if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonUnseal)); got != 2 {
		t.Fatalf("rejected_total{reason=unseal} = %v, want 2", got)
	}
	load.check(t)
}

// TestResealSealsPlainKeys: Reseal also seals keys stored as plain PEM.
func TestResealSealsPlainKeys(t *testing.T) {
	e := newEnv(t)
	l := e.ca.Peer(t, []string{apiName})
	if _, err := Publish(ctxT(t, 5*time.Second), e.cli, nil, "api", l.CertPEM, l.KeyPEM, WithAllowPlaintextKeys(true)); err != nil {
		t.Fatal(err)
	}
	if n, err := Reseal(ctxT(t, 5*time.Second), e.cli, e.kr); err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v", n, err)
	}
	s := e.store()
	ready(t, s, "api")
	if id := identityNamed(s, "api"); id.KEKID != "kek-1" {
		t.Fatalf("KEKID = %q after Reseal", id.KEKID)
	}
}

// TestLogsNeverContainKeyMaterial runs rotations and bad updates and
// checks that neither the logs nor the errors a Store reports hold a
// private key or a KEK.
func TestLogsNeverContainKeyMaterial(t *testing.T) {
	e := newEnv(t)
	var leaves []*certgen.Leaf
	issue := func(opts ...certgen.Option) *certgen.Leaf {
		l := e.ca.Peer(t, []string{apiName}, opts...)
		leaves = append(leaves, l)
		return l
	}
	e.publish("api", issue())
	s := e.store()
	ready(t, s, "api")
	for range 3 {
		waitRev(t, s, e.publish("api", issue()))
	}
	crtKey, keyKey := CertKey("", "api"), KeyKey("", "api")
	plain, mismatch, expired := issue(), issue(), issue(certgen.Expired())
	other := issue()
	sealed, _ := e.kr.Seal(keyKey, expired.KeyPEM)
	tampered, _ := e.kr.Seal(keyKey, other.KeyPEM)
	tampered[len(tampered)-1] ^= 1
	sealedOther, _ := e.kr.Seal(keyKey, other.KeyPEM)
	for _, kvs := range [][]string{
		{crtKey, string(plain.CertPEM), keyKey, string(plain.KeyPEM)},
		{crtKey, string(mismatch.CertPEM), keyKey, string(sealedOther)},
		{crtKey, string(expired.CertPEM), keyKey, string(sealed)},
		{crtKey, string(other.CertPEM), keyKey, string(tampered)},
		{crtKey, string(other.KeyPEM), keyKey, string(sealedOther)}, // a key in the certificate field
	} {
		waitRev(t, s, e.put(kvs...))
	}
	if n, err := Reseal(ctxT(t, 5*time.Second), e.cli, e.kr); err == nil {
		t.Logf("Reseal: %d", n)
	}

	text := e.logs.String()
	for _, id := range s.Identities() {
		text += fmt.Sprint(id.Rejected)
	}
	if !strings.Contains(text, "identity loaded") || !strings.Contains(text, "update refused") {
		t.Fatalf("the scenario did not log loads and refusals:\n%s", text)
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Fatal(`logs contain "PRIVATE KEY"`)
	}
	if containsKey(text, e.kek.key) {
		t.Fatal("logs contain the KEK")
	}
	for _, l := range leaves {
		// Every line of the PEM body, and the DER and scalar in hex.
		for _, line := range strings.Split(string(l.KeyPEM), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(text, line) {
				t.Fatalf("logs contain a line of a private key: %s", line)
			}
		}
		if b, _ := pemBody(l.KeyPEM); containsKey(text, b) {
			t.Fatal("logs contain a private key's DER")
		}
		if k, ok := l.Key.(*ecdsa.PrivateKey); ok && containsKey(text, mustBytes(t, k)) {
			t.Fatal("logs contain a private key's scalar")
		}
	}
}

// pemBody returns the bytes of the first PEM block of data.
func pemBody(data []byte) ([]byte, bool) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, false
	}
	return b.Bytes, true
}

// mustBytes returns the raw private scalar of k.
func mustBytes(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// 32 printable characters are a password or a short key, not 256 bits: refused.
func TestParseKEKRefusesThirtyTwoPrintableCharacters(t *testing.T) {
	for _, text := range []string{
		"correct-horse-battery-staple-123", // a password
		"00112233445566778899aabbccddeeff", // 16 bytes in hex
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", // 24 bytes in base64
	} {
		if _, err := ParseKEK("k1", []byte(text)); !errors.Is(err, ErrInvalidKEK) {
			t.Errorf("ParseKEK(%q): %v, want ErrInvalidKEK", text, err)
		}
	}
	raw := make([]byte, KEKSize)
	for i := range raw {
		raw[i] = byte(i * 7) // binary
	}
	if _, err := ParseKEK("k1", raw); err != nil {
		t.Errorf("32 binary bytes: %v", err)
	}
}
