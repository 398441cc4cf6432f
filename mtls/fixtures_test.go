package mtls

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
)

// The fixtures in testdata are fixed inputs for the fuzz targets and for
// the envelope format test: fuzz workers run in other processes, so their
// seeds must not depend on material generated at random in each process.
// Regenerate them with
//
//	MTLS_WRITE_FIXTURES=1 go test -run TestWriteFixtures ./mtls/
const (
	fixtureCA       = "testdata/fixture-ca.pem"
	fixtureLeaf     = "testdata/fixture-leaf.pem"
	fixtureLeafKey  = "testdata/fixture-leaf.key.pem"
	fixtureEnvelope = "testdata/fixture-leaf.key.sealed.hex" // fixtureLeafKey sealed at fuzzKey with fuzzKeyring
)

func TestWriteFixtures(t *testing.T) {
	if os.Getenv("MTLS_WRITE_FIXTURES") == "" {
		t.Skip("set MTLS_WRITE_FIXTURES=1 to regenerate testdata fixtures")
	}
	long := certgen.ValidFor(100 * 365 * 24 * time.Hour)
	ca := certgen.NewCA(t, "fixture-ca", long)
	leaf := ca.Peer(t, []string{"fuzz.test"}, long)
	sealed, err := fuzzKeyring(t).Seal(fuzzKey, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		fixtureCA: ca.PEM, fixtureLeaf: leaf.CertPEM, fixtureLeafKey: leaf.KeyPEM,
		fixtureEnvelope: []byte(hex.EncodeToString(sealed) + "\n"),
	} {
		if err := os.WriteFile(filepath.FromSlash(path), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if filepath.Ext(path) == ".hex" {
		if b, err = hex.DecodeString(string(bytes.TrimSpace(b))); err != nil {
			t.Fatalf("fixture %s: %v", path, err)
		}
	}
	return b
}

// TestEnvelopeFormatV1Opens guards the envelope format: a value sealed by
// an earlier build still opens, and only at its etcd key.
func TestEnvelopeFormatV1Opens(t *testing.T) {
	sealed := readFixture(t, fixtureEnvelope)
	got, err := fuzzKeyring(t).Open(fuzzKey, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, readFixture(t, fixtureLeafKey)) {
		t.Fatal("the fixture envelope opens to another key")
	}
	if id, ok := SealedBy(sealed); !ok || id != "fuzz" {
		t.Fatalf("SealedBy = %q, %v", id, ok)
	}
	if _, err := fuzzKeyring(t).Open("/certs/other/tls.key", sealed); err == nil {
		t.Fatal("the envelope opened at another etcd key")
	}
}
