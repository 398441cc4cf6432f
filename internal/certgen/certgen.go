// Package certgen issues throw-away certificates for tests and demos: a CA,
// server and client leaves signed by it, and deliberately bad ones (expired,
// from another CA, mismatched keys). Keys are ECDSA P-256 so issuing is
// fast. Nothing here is fit for production certificates.
package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TB is the part of testing.TB that certgen needs; a demo program passes an
// adapter that exits on Fatalf.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// CA is a certificate authority that signs leaves.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // the CA certificate, PEM
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the leaf followed by its issuer chain, PEM
	KeyPEM  []byte // PKCS#8 private key, PEM
}

// TLSCertificate returns the leaf as a tls.Certificate.
func (l *Leaf) TLSCertificate(t TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatalf("certgen: key pair: %v", err)
	}
	return c
}

// Option adjusts a certificate before it is signed.
type Option func(*x509.Certificate)

// ValidFor sets the validity window to start now-1h and last d.
func ValidFor(d time.Duration) Option {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-time.Hour)
		c.NotAfter = time.Now().Add(d)
	}
}

// Expired makes a certificate whose validity ended an hour ago.
func Expired() Option {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-time.Hour)
	}
}

// NotYetValid makes a certificate whose validity starts in an hour.
func NotYetValid() Option {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(time.Hour)
		c.NotAfter = time.Now().Add(48 * time.Hour)
	}
}

// NewCA creates a self-signed CA named name.
func NewCA(t TB, name string, opts ...Option) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"smartroute tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("certgen: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certgen: parse CA: %v", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pemBlock("CERTIFICATE", der)}
}

// Server issues a server certificate for the given DNS names and IP
// addresses (strings that parse as IPs become IP SANs). The first name is
// the subject's common name.
func (ca *CA) Server(t TB, names []string, opts ...Option) *Leaf {
	t.Helper()
	return ca.issue(t, names, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, opts)
}

// Client issues a client certificate for identity name.
func (ca *CA) Client(t TB, name string, opts ...Option) *Leaf {
	t.Helper()
	return ca.issue(t, []string{name}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, opts)
}

// Peer issues a certificate good for both server and client auth, as an
// mTLS identity that both serves and calls.
func (ca *CA) Peer(t TB, names []string, opts ...Option) *Leaf {
	t.Helper()
	return ca.issue(t, names, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, opts)
}

func (ca *CA) issue(t TB, names []string, usage []x509.ExtKeyUsage, opts []Option) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("certgen: issue %v: %v", names, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certgen: parse leaf: %v", err)
	}
	return &Leaf{
		Cert:    cert,
		Key:     key,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  KeyPEM(t, key),
	}
}

// Pool returns a cert pool holding the given CAs.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// KeyPEM encodes key as a PKCS#8 PEM block.
func KeyPEM(t TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("certgen: marshal key: %v", err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// NewKeyPEM returns a fresh private key, PEM, matching no certificate.
func NewKeyPEM(t TB) []byte {
	t.Helper()
	return KeyPEM(t, newKey(t))
}

// WriteFiles writes the leaf to dir as <name>.crt and <name>.key and the CA
// to ca.crt, returning the three paths. For tools that take files (etcd,
// regagent, lbprobe).
func WriteFiles(t TB, dir, name string, ca *CA, l *Leaf) (certFile, keyFile, caFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	caFile = filepath.Join(dir, "ca.crt")
	for path, data := range map[string][]byte{certFile: l.CertPEM, keyFile: l.KeyPEM, caFile: ca.PEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatalf("certgen: write %s: %v", path, err)
		}
	}
	return certFile, keyFile, caFile
}

func newKey(t TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("certgen: generate key: %v", err)
	}
	return key
}

func serial(t TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("certgen: serial: %v", err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
