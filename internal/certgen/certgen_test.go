package certgen

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestIssuedLeavesVerifyAgainstTheirCAOnly(t *testing.T) {
	ca := NewCA(t, "ca-1")
	other := NewCA(t, "ca-2")
	srv := ca.Server(t, []string{"api.test", "127.0.0.1"})
	verify := func(pool *x509.CertPool, name string) error {
		_, err := srv.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
		return err
	}
	if err := verify(Pool(ca), "api.test"); err != nil {
		t.Fatalf("server cert does not verify against its CA: %v", err)
	}
	if err := verify(Pool(ca), "127.0.0.1"); err != nil {
		t.Fatalf("IP SAN missing: %v", err)
	}
	if err := verify(Pool(other), "api.test"); err == nil {
		t.Fatal("server cert verifies against another CA")
	}
	if _, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM); err != nil {
		t.Fatalf("PEM pair does not load: %v", err)
	}
	if _, err := tls.X509KeyPair(srv.CertPEM, NewKeyPEM(t)); err == nil {
		t.Fatal("a fresh key matches the certificate")
	}
	if exp := ca.Client(t, "c", Expired()); !exp.Cert.NotAfter.Before(time.Now()) {
		t.Fatal("Expired() certificate is still valid")
	}
}
