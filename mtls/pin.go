package mtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// The CA bundle can be pinned to local trust, so that write access to
// etcd alone cannot make a process trust a new CA:
//
//   - trust anchors (WithTrustAnchors): root certificates kept on the
//     host; a bundle is accepted if every CA in it chains to one of them
//     (the anchor itself, or a CA it signed, with the other CAs of the
//     bundle as intermediates);
//   - bundle signers (WithBundleSigners): public keys kept on the host; a
//     bundle is accepted if <prefix>/ca.sig holds a valid signature of it
//     by one of them (SignBundle makes it; the private key stays offline).
//
// With both, either suffices. A bundle that passes neither is refused
// (ReasonUnpinned) and the last good one stays. Without pins, whoever can
// write <prefix>/ca decides which CAs the process trusts.

// sigFormat names version 1 of the detached bundle signature.
const sigFormat = "smartroute-ca-sig/v1"

// BundleSignature is the JSON document at <prefix>/ca.sig, version 1:
//
//	{
//	  "format": "smartroute-ca-sig/v1",
//	  "key_id": "<base64 SHA-256 of the signer's SubjectPublicKeyInfo>",
//	  "signed_at": "2026-03-01T10:00:00Z",
//	  "bundle_sha256": "<hex SHA-256 of the bundle's bytes, exactly as stored>",
//	  "signature": "<base64>"
//	}
//
// The signature covers the UTF-8 text
//
//	smartroute-ca-sig/v1\n<etcd key of the bundle>\n<signed_at>\n<bundle_sha256>\n
//
// with Ed25519 (over the text itself), ECDSA (ASN.1, over its SHA-256) or
// RSA-PSS (SHA-256, salt of the hash's length). The etcd key binds a
// signature to one prefix; signed_at lets a Store refuse a bundle signed
// before the one it uses (a replayed old bundle). Only a key pinned with
// WithBundleSigners is consulted: key_id selects it, it proves nothing by
// itself.
type BundleSignature struct {
	Format       string `json:"format"`
	KeyID        string `json:"key_id"`
	SignedAt     string `json:"signed_at"`
	BundleSHA256 string `json:"bundle_sha256"`
	Signature    []byte `json:"signature"`
}

// signedText is what a bundle signature covers.
func signedText(caKey, signedAt, bundleSHA256 string) []byte {
	return []byte(sigFormat + "\n" + caKey + "\n" + signedAt + "\n" + bundleSHA256 + "\n")
}

// keyID returns the base64 SHA-256 of pub's SubjectPublicKeyInfo.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// SignBundle signs a CA bundle for <prefix>/ca and returns the value of
// <prefix>/ca.sig (see BundleSignature). PublishCA calls it when given
// WithBundleSigningKey; run it offline (lbprobe certs sign) to keep the
// key off the hosts that publish. key is an Ed25519, ECDSA or RSA private
// key. Options: WithPrefix, WithClock (the signed_at time).
func SignBundle(key crypto.Signer, bundlePEM []byte, opts ...Option) ([]byte, error) {
	o := newOptions(opts)
	id, err := keyID(key.Public())
	if err != nil {
		return nil, fmt.Errorf("mtls: sign CA bundle: %w", err)
	}
	sum := sha256.Sum256(bundlePEM)
	s := BundleSignature{
		Format:       sigFormat,
		KeyID:        id,
		SignedAt:     o.now().UTC().Format(time.RFC3339Nano),
		BundleSHA256: hex.EncodeToString(sum[:]),
	}
	text := signedText(CAKey(o.prefix), s.SignedAt, s.BundleSHA256)
	switch key.Public().(type) {
	case ed25519.PublicKey:
		s.Signature, err = key.Sign(rand.Reader, text, crypto.Hash(0))
	case *ecdsa.PublicKey:
		h := sha256.Sum256(text)
		s.Signature, err = key.Sign(rand.Reader, h[:], crypto.SHA256)
	case *rsa.PublicKey:
		h := sha256.Sum256(text)
		s.Signature, err = key.Sign(rand.Reader, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	default:
		return nil, fmt.Errorf("mtls: sign CA bundle: unsupported key type %T", key.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("mtls: sign CA bundle: %w", err)
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("mtls: sign CA bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// verifyBundleSignature checks sig against bundle for caKey with the
// pinned keys and returns the time it was signed at.
func verifyBundleSignature(signers map[string]crypto.PublicKey, caKey string, bundle, sig []byte) (time.Time, error) {
	if len(sig) == 0 {
		return time.Time{}, fmt.Errorf("no signature at %s", strings.TrimSuffix(caKey, caName)+caSigName)
	}
	if len(sig) > maxPEMSize {
		return time.Time{}, fmt.Errorf("signature of %d bytes", len(sig))
	}
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	var s BundleSignature
	if err := dec.Decode(&s); err != nil {
		return time.Time{}, fmt.Errorf("signature: %w", err)
	}
	if s.Format != sigFormat {
		return time.Time{}, fmt.Errorf("signature format %q, want %q", trunc(s.Format), sigFormat)
	}
	at, err := time.Parse(time.RFC3339Nano, s.SignedAt)
	if err != nil {
		return time.Time{}, fmt.Errorf("signature: signed_at: %w", err)
	}
	sum := sha256.Sum256(bundle)
	if s.BundleSHA256 != hex.EncodeToString(sum[:]) {
		return time.Time{}, errors.New("the signature is of another bundle (bundle_sha256 differs)")
	}
	pub, ok := signers[s.KeyID]
	if !ok {
		return time.Time{}, fmt.Errorf("signed by key %s, which is not pinned", trunc(s.KeyID))
	}
	text := signedText(caKey, s.SignedAt, s.BundleSHA256)
	h := sha256.Sum256(text)
	valid := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		valid = ed25519.Verify(k, text, s.Signature)
	case *ecdsa.PublicKey:
		valid = ecdsa.VerifyASN1(k, h[:], s.Signature)
	case *rsa.PublicKey:
		valid = rsa.VerifyPSS(k, crypto.SHA256, h[:], s.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	}
	if !valid {
		return time.Time{}, fmt.Errorf("the signature by key %s does not verify (altered, or made for another etcd key)", s.KeyID)
	}
	return at, nil
}

// checkAnchors checks that every CA of b chains to an anchor, with the
// other CAs of the bundle as intermediates. Each CA is checked at a time
// inside its own validity window, so that an expired CA kept in the
// bundle during a rotation is judged by who signed it, not refused for
// its age (the handshakes refuse what it signs anyway).
func checkAnchors(anchors *x509.CertPool, b *caBundle, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range b.certs {
		inter.AddCert(c)
	}
	for i, c := range b.certs {
		at := now
		if at.Before(c.NotBefore) {
			at = c.NotBefore
		}
		if at.After(c.NotAfter) {
			at = c.NotAfter
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("CA %d (%s, serial %s) does not chain to a trust anchor: %w", i, c.Subject, serialHex(c), err)
		}
	}
	return nil
}

// pins are a process's local trust for the CA bundle.
type pins struct {
	anchors []*x509.Certificate
	pool    *x509.CertPool
	signers map[string]crypto.PublicKey // by key ID
}

func (p *pins) pinned() bool { return p != nil && (p.pool != nil || len(p.signers) > 0) }

// check judges a bundle read at caKey with its signature sig (nil if
// absent) and returns the time it was signed at (zero if it was accepted
// by the anchors alone).
func (p *pins) check(caKey string, b *caBundle, sig []byte, now time.Time) (time.Time, *ValidationError) {
	var why []string
	if p.pool != nil {
		err := checkAnchors(p.pool, b, now)
		if err == nil {
			return time.Time{}, nil
		}
		why = append(why, err.Error())
	}
	if len(p.signers) > 0 {
		at, err := verifyBundleSignature(p.signers, caKey, b.raw, sig)
		if err == nil {
			return at, nil
		}
		why = append(why, err.Error())
	}
	return time.Time{}, reject(ReasonUnpinned, "CA bundle refused: %s: %w", strings.Join(why, "; and "), ErrUnpinned)
}

// LoadTrustAnchors reads PEM root certificates from a file, for
// WithTrustAnchors. Every block must be a CA certificate.
func LoadTrustAnchors(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mtls: trust anchors: %w", err)
	}
	certs, err := decodeCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("mtls: trust anchors %s: %w", path, err)
	}
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("mtls: trust anchors %s: certificate %d (%s) is not a CA", path, i, c.Subject)
		}
	}
	return certs, nil
}

// LoadBundleSigners reads PEM public keys ("PUBLIC KEY" blocks, as
// `openssl pkey -pubout` writes them) from a file, for WithBundleSigners.
func LoadBundleSigners(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mtls: bundle signers: %w", err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("mtls: bundle signers %s: %w", path, err)
	}
	return keys, nil
}

// ParsePublicKeys reads the PEM "PUBLIC KEY" blocks of data: Ed25519,
// ECDSA or RSA keys.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %d is %s, want PUBLIC KEY", len(keys), blockType(block.Type))
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key %d: %w", len(keys), err)
		}
		switch k.(type) {
		case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		default:
			return nil, fmt.Errorf("public key %d: unsupported type %T", len(keys), k)
		}
		keys = append(keys, k)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("data that is not PEM after the keys")
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}

// ParseSigningKey reads one unencrypted PEM private key (PKCS#8, SEC 1
// or PKCS#1) for SignBundle, as `openssl genpkey` writes it.
func ParseSigningKey(data []byte) (crypto.Signer, error) {
	k, verr := parsePrivateKey(data)
	if verr != nil {
		return nil, fmt.Errorf("mtls: signing key: %w", verr.Err)
	}
	return k, nil
}

// newPins validates the pin options.
func newPins(anchors []*x509.Certificate, signers []crypto.PublicKey) (*pins, error) {
	p := &pins{anchors: anchors, signers: map[string]crypto.PublicKey{}}
	if len(anchors) > 0 {
		p.pool = x509.NewCertPool()
		for i, a := range anchors {
			if a == nil || !a.BasicConstraintsValid || !a.IsCA {
				return nil, fmt.Errorf("trust anchor %d is not a CA certificate", i)
			}
			p.pool.AddCert(a)
		}
	}
	for i, k := range signers {
		switch k.(type) {
		case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		default:
			return nil, fmt.Errorf("bundle signer %d: unsupported key type %T", i, k)
		}
		id, err := keyID(k)
		if err != nil {
			return nil, fmt.Errorf("bundle signer %d: %w", i, err)
		}
		p.signers[id] = k
	}
	return p, nil
}
