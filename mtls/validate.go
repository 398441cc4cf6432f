package mtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxPEMSize bounds a certificate chain or a CA bundle: a few certificates
// of a few kilobytes each, with room to spare.
const maxPEMSize = 1 << 20

// caBundle is a validated CA bundle.
type caBundle struct {
	raw      []byte
	rev      int64
	certs    []*x509.Certificate
	pool     *x509.CertPool
	signedAt time.Time // when its pinned signature was made; zero if none was needed
}

// parseBundle validates a CA bundle: one or more PEM CERTIFICATE blocks,
// each a CA certificate, at least one of them inside its validity window
// at now. Expired CAs are kept (they verify nothing, and a bundle must
// stay loadable while an expired CA waits to be removed).
func parseBundle(data []byte, now time.Time) (*caBundle, *ValidationError) {
	certs, err := decodeCertificates(data)
	if err != nil {
		return nil, reject(ReasonMalformed, "CA bundle: %w", err)
	}
	b := &caBundle{raw: bytes.Clone(data), certs: certs, pool: x509.NewCertPool()}
	var valid, early int
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, reject(ReasonNotCA, "CA bundle: certificate %d (%s, serial %s) is not a CA", i, c.Subject, serialHex(c))
		}
		switch {
		case now.Before(c.NotBefore):
			early++
		case now.After(c.NotAfter):
		default:
			valid++
		}
		b.pool.AddCert(c)
	}
	if valid == 0 {
		if early > 0 {
			return nil, reject(ReasonNotYetValid, "CA bundle: no CA is valid yet at %s", now.UTC().Format(time.RFC3339))
		}
		return nil, reject(ReasonExpired, "CA bundle: every CA has expired at %s", now.UTC().Format(time.RFC3339))
	}
	return b, nil
}

// decodeCertificates parses every PEM block of data as a certificate. Text
// before and between the blocks (as openssl writes: "subject=…" lines) is
// ignored; anything but white space after the last block is an error, so
// that a truncated block (a BEGIN line without its END, which PEM
// decoding would skip) does not silently drop a certificate. A block of
// another type is an error too, so that a private key pasted into a
// certificate field is not carried along.
func decodeCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxPEMSize {
		return nil, fmt.Errorf("%d bytes, at most %d", len(data), maxPEMSize)
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		before := rest
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if n := bytes.Count(before[:len(before)-len(rest)], []byte("-----BEGIN")); n != 1 {
			return nil, fmt.Errorf("a PEM block before certificate %d does not decode (truncated or altered)", len(certs))
		}
		if block.Type != "CERTIFICATE" {
			// Never echo the block: it may be a private key.
			return nil, fmt.Errorf("PEM block %d is %s, want CERTIFICATE", len(certs), blockType(block.Type))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%d bytes after the last certificate that are not a PEM block (a truncated block?)", len(bytes.TrimSpace(rest)))
	}
	return certs, nil
}

// blockType returns a PEM type for an error message, bounded in length.
// Private key types are named without the words "PRIVATE KEY", so that a
// search of the logs for leaked keys finds only leaks.
func blockType(t string) string {
	if strings.Contains(t, "PRIVATE") {
		return "a private key"
	}
	if len(t) > 40 {
		t = t[:40] + "…"
	}
	return fmt.Sprintf("%q", t)
}

// Private key PEM block types that parsePrivateKey reads.
const (
	pemPKCS8 = "PRIVATE KEY"
	pemSEC1  = "EC PRIVATE KEY"
	pemPKCS1 = "RSA PRIVATE KEY"
)

// keyFormat names the key formats for error messages.
var keyFormat = map[string]string{pemPKCS8: "PKCS#8", pemSEC1: "SEC 1", pemPKCS1: "PKCS#1"}

// looksLikePEMKey reports whether value holds a PEM private key block, so
// that the Store can tell a plain key (ReasonPlainKey) from garbage
// (ReasonMalformed) without parsing it.
func looksLikePEMKey(value []byte) bool {
	return bytes.Contains(value, []byte("-----BEGIN ")) && bytes.Contains(value, []byte("PRIVATE KEY-----"))
}

// isEncryptedPEM reports whether value holds a legacy encrypted PEM block
// (RFC 1423) or an encrypted PKCS#8 key.
func isEncryptedPEM(value []byte) bool {
	rest := value
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if _, ok := block.Headers["Proc-Type"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
			return true
		}
	}
}

// parsePrivateKey reads exactly one unencrypted private key (PKCS#8, SEC 1
// or PKCS#1) from PEM. "EC PARAMETERS" blocks, as openssl ecparam writes
// them, are skipped. Errors never contain key material: parse errors of
// the key are not wrapped, only named.
func parsePrivateKey(data []byte) (crypto.Signer, *ValidationError) {
	var key crypto.Signer
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "EC PARAMETERS" {
			continue
		}
		if key != nil {
			return nil, reject(ReasonMalformed, "private key: more than one PEM block")
		}
		if _, ok := block.Headers["Proc-Type"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, reject(ReasonMalformed, "private key: encrypted PEM is not supported; store the key sealed (Publish) instead")
		}
		var k any
		var err error
		switch block.Type {
		case pemPKCS8:
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemSEC1:
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case pemPKCS1:
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			return nil, reject(ReasonMalformed, "private key: PEM block is %s, want a PKCS#8, SEC 1 or PKCS#1 private key", blockType(block.Type))
		}
		if err != nil {
			return nil, reject(ReasonMalformed, "private key: the %s block does not parse", keyFormat[block.Type])
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, reject(ReasonMalformed, "private key: unsupported key type %T", k)
		}
		switch s.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		default:
			return nil, reject(ReasonMalformed, "private key: unsupported key type %T", k)
		}
		key = s
	}
	if key == nil {
		return nil, reject(ReasonMalformed, "private key: no PEM private key block")
	}
	return key, nil
}

// parsePair parses a certificate chain and its private key and checks that
// the key belongs to the leaf (the first certificate).
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, *ValidationError) {
	chain, err := decodeCertificates(certPEM)
	if err != nil {
		return nil, reject(ReasonMalformed, "certificate chain: %w", err)
	}
	key, verr := parsePrivateKey(keyPEM)
	if verr != nil {
		return nil, verr
	}
	return assemble(chain, key)
}

// assemble checks that key belongs to the leaf of chain and returns the
// pair as a tls.Certificate with its Leaf set.
func assemble(chain []*x509.Certificate, key crypto.Signer) (*tls.Certificate, *ValidationError) {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, reject(ReasonKeyMismatch, "private key does not match the certificate (%s, serial %s)", chain[0].Subject, serialHex(chain[0]))
	}
	c := &tls.Certificate{PrivateKey: redactedKey{key}, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// checkWindow checks the leaf's validity window at now.
func checkWindow(leaf *x509.Certificate, now time.Time) *ValidationError {
	switch {
	case now.Before(leaf.NotBefore):
		return reject(ReasonNotYetValid, "certificate (%s, serial %s) is not valid before %s",
			leaf.Subject, serialHex(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return reject(ReasonExpired, "certificate (%s, serial %s) expired at %s",
			leaf.Subject, serialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// verifyChain checks that cert's leaf chains to the bundle at now, with
// the rest of its chain as intermediates. Key usages are not checked here:
// the handshakes check them for the role the certificate plays.
func verifyChain(cert *tls.Certificate, ca *caBundle, now time.Time) *ValidationError {
	if ca == nil {
		return reject(ReasonUntrusted, "certificate (%s, serial %s): %w", cert.Leaf.Subject, serialHex(cert.Leaf), ErrNoCABundle)
	}
	if _, err := verify(cert.Leaf, cert.Certificate[1:], ca.pool, now, "", x509.ExtKeyUsageAny); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return reject(ReasonExpired, "certificate (%s, serial %s): %w", cert.Leaf.Subject, serialHex(cert.Leaf), err)
		}
		return reject(ReasonUntrusted, "certificate (%s, serial %s) does not chain to the CA bundle: %w", cert.Leaf.Subject, serialHex(cert.Leaf), err)
	}
	return nil
}

// verify runs x509 verification of leaf against roots with the DER
// intermediates, at now, for usage and, when name is not empty, for the
// host name or IP address name.
func verify(leaf *x509.Certificate, intermediates [][]byte, roots *x509.CertPool, now time.Time, name string, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		DNSName:     name,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}
	if len(intermediates) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, der := range intermediates {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("intermediate certificate: %w", err)
			}
			opts.Intermediates.AddCert(c)
		}
	}
	return leaf.Verify(opts)
}

// verifyCerts is verify for parsed certificates, as a handshake has them.
func verifyCerts(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, name string, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		DNSName:       name,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err
}

// serialHex formats a certificate's serial number for logs.
func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return "none"
	}
	return strings.ToLower(c.SerialNumber.Text(16))
}

// decodeKeyValue turns the value of a tls.key etcd key into private key
// PEM: it opens an envelope with kr, or passes a plain PEM key through if
// allowPlain. kekID is the ID of the key-encryption key that sealed it, ""
// for a plain key. The caller must clear the returned PEM after use.
func decodeKeyValue(etcdKey string, value []byte, kr *Keyring, allowPlain bool) (keyPEM []byte, kekID string, verr *ValidationError) {
	switch {
	case isEnvelope(value):
		if kr == nil {
			id, _ := SealedBy(value)
			return nil, id, reject(ReasonUnseal, "private key sealed with key-encryption key %q: %w", id, ErrNoKeyring)
		}
		p, err := kr.Open(etcdKey, value)
		if err != nil {
			if errors.Is(err, ErrMalformedEnvelope) {
				return nil, "", reject(ReasonMalformed, "%w", err)
			}
			return nil, "", reject(ReasonUnseal, "%w", err)
		}
		id, _ := SealedBy(value)
		return p, id, nil
	case looksLikePEMKey(value):
		if isEncryptedPEM(value) {
			return nil, "", reject(ReasonMalformed, "private key: encrypted PEM is not supported; store the key sealed (Publish) instead")
		}
		if !allowPlain {
			return nil, "", reject(ReasonPlainKey, "private key is plain PEM; seal it (Publish with a Keyring) or allow plain keys (WithAllowPlaintextKeys)")
		}
		return bytes.Clone(value), "", nil
	}
	return nil, "", reject(ReasonMalformed, "private key: neither a sealed-key envelope nor PEM (%d bytes)", len(value))
}

// buildIdentity validates one identity's certificate chain and key value
// read from etcd: the key opens, parses and matches, the leaf is inside its
// validity window at now, chains to ca and is not revoked by rl. Errors
// are tied to the etcd key of the value at fault. With o.inspect and no
// keyring, a sealed key is checked for form only and not opened.
func buildIdentity(o *options, name string, crt, key rawValue, ca *caBundle, rl *revocationList, now time.Time) (*identity, *ValidationError) {
	keyKey, crtKey := KeyKey(o.prefix, name), CertKey(o.prefix, name)
	var signer crypto.Signer
	var kekID string
	if o.inspect && o.keyring == nil && isEnvelope(key.value) {
		e, err := parseEnvelope(key.value)
		if err != nil {
			return nil, reject(ReasonMalformed, "%w", err).at(keyKey, key.rev)
		}
		kekID = e.kekID
	} else {
		keyPEM, id, verr := decodeKeyValue(keyKey, key.value, o.keyring, o.allowPlain)
		if verr != nil {
			return nil, verr.at(keyKey, key.rev)
		}
		kekID = id
		signer, verr = parsePrivateKey(keyPEM)
		clear(keyPEM)
		if verr != nil {
			return nil, verr.at(keyKey, key.rev)
		}
	}
	chain, err := decodeCertificates(crt.value)
	if err != nil {
		return nil, reject(ReasonMalformed, "certificate chain: %w", err).at(crtKey, crt.rev)
	}
	cert := pairless(chain)
	if signer != nil {
		var verr *ValidationError
		if cert, verr = assemble(chain, signer); verr != nil {
			return nil, verr.at(crtKey, crt.rev)
		}
	}
	if verr := checkWindow(cert.Leaf, now); verr != nil {
		return nil, verr.at(crtKey, crt.rev)
	}
	if verr := verifyChain(cert, ca, now); verr != nil {
		return nil, verr.at(crtKey, crt.rev)
	}
	if r, c := rl.match(chain, ca); r != nil {
		return nil, reject(ReasonRevoked, "%w", revokedError(c, r)).at(crtKey, crt.rev)
	}
	return &identity{name: name, cert: cert, chain: chain, crtRev: crt.rev, keyRev: key.rev, kekID: kekID, keyChecked: signer != nil}, nil
}

// pairless wraps a chain without its key, for verifyChain.
func pairless(chain []*x509.Certificate) *tls.Certificate {
	c := &tls.Certificate{Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}
