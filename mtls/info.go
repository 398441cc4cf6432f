package mtls

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"
)

// CertificateInfo is what may be shown of a certificate: names, serial,
// validity and fingerprints. It holds no key material and marshals to
// JSON as is, so it is safe to log, print and serve from a debug
// endpoint.
type CertificateInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	URIs        []string  `json:"uris,omitempty"`
	Emails      []string  `json:"emails,omitempty"`
	Serial      string    `json:"serial"` // hexadecimal, lower case, as in logs and revocation lists
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	IsCA        bool      `json:"is_ca,omitempty"`
	// SHA256 is the certificate's fingerprint: hexadecimal SHA-256 of its
	// DER, as `openssl x509 -fingerprint -sha256` prints it without
	// colons.
	SHA256 string `json:"sha256"`
	// SPKISHA256 is the pin of its public key: base64 SHA-256 of its
	// SubjectPublicKeyInfo, as Envoy's verify_certificate_spki and the
	// revocation list's spki_sha256 take it.
	SPKISHA256 string `json:"spki_sha256"`
}

// DescribeCertificate returns the public description of c.
func DescribeCertificate(c *x509.Certificate) CertificateInfo {
	fp := sha256.Sum256(c.Raw)
	info := CertificateInfo{
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		DNSNames:   c.DNSNames,
		Emails:     c.EmailAddresses,
		Serial:     serialHex(c),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
		IsCA:       c.BasicConstraintsValid && c.IsCA,
		SHA256:     hex.EncodeToString(fp[:]),
		SPKISHA256: SPKIPin(c),
	}
	for _, ip := range c.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		info.URIs = append(info.URIs, uriString(u))
	}
	return info
}

// uriString prints a URI SAN without user information, which a
// certificate should not carry and a listing should not repeat.
func uriString(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// SANs returns every subject alternative name: DNS names, IP addresses,
// URIs, then e-mail addresses.
func (i CertificateInfo) SANs() []string {
	out := make([]string, 0, len(i.DNSNames)+len(i.IPAddresses)+len(i.URIs)+len(i.Emails))
	out = append(out, i.DNSNames...)
	out = append(out, i.IPAddresses...)
	out = append(out, i.URIs...)
	return append(out, i.Emails...)
}

// SPKIPin returns the base64 SHA-256 of c's SubjectPublicKeyInfo, the form
// the revocation list's spki_sha256 takes (and Envoy's
// verify_certificate_spki).
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// redactedKey holds a private key for the handshakes and shows nothing of
// it: json.Marshal, fmt's verbs and slog print "[redacted]". A
// *tls.Certificate the Store hands out carries its key in one, so that
// dumping the certificate for debugging does not leak the key.
type redactedKey struct{ signer crypto.Signer }

const redacted = "[redacted]"

// Public implements crypto.Signer.
func (k redactedKey) Public() crypto.PublicKey { return k.signer.Public() }

// Sign implements crypto.Signer.
func (k redactedKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.signer.Sign(rand, digest, opts)
}

// MarshalJSON prints "[redacted]".
func (k redactedKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText prints "[redacted]" (encoding.TextMarshaler users: YAML,
// flag dumps).
func (k redactedKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Format prints "[redacted]" for every verb, %#v included.
func (k redactedKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue logs "[redacted]".
func (k redactedKey) LogValue() slog.Value { return slog.StringValue(redacted) }
