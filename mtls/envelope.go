package mtls

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// The sealed-key envelope, version 1 (see the package documentation):
//
//	offset    size  field
//	0         4     magic "SRKE"
//	4         1     version, 1
//	5         1     n, the length of the KEK ID (1..64)
//	6         n     KEK ID
//	6+n       12    wrap nonce
//	18+n      48    data key (32 bytes) sealed with the KEK (AES-256-GCM)
//	66+n      12    data nonce
//	78+n      rest  private key PEM sealed with the data key (AES-256-GCM)
//
// Both seals take header || etcd key as additional authenticated data,
// where header is bytes 0..6+n.
const (
	envelopeMagic   = "SRKE"
	envelopeVersion = 1
	dataKeySize     = 32
	gcmNonceSize    = 12
	gcmTagSize      = 16
	// envelopeFixed is the size of everything but the ID and the sealed key.
	envelopeFixed = len(envelopeMagic) + 2 + gcmNonceSize + dataKeySize + gcmTagSize + gcmNonceSize
	// maxEnvelopeSize bounds what Open reads: a PEM private key is a few
	// kilobytes even for RSA-8192.
	maxEnvelopeSize = 64 << 10
)

// envelope is a parsed envelope. Its slices alias the input.
type envelope struct {
	header     []byte // magic, version, ID length, ID
	kekID      string
	wrapNonce  []byte
	wrappedKey []byte // data key + tag
	dataNonce  []byte
	ciphertext []byte // key PEM + tag
}

// isEnvelope reports whether value starts like an envelope (of any
// version).
func isEnvelope(value []byte) bool { return bytes.HasPrefix(value, []byte(envelopeMagic)) }

// parseEnvelope splits value into its fields without opening it.
func parseEnvelope(value []byte) (envelope, error) {
	if !isEnvelope(value) {
		return envelope{}, fmt.Errorf("mtls: no envelope magic: %w", ErrMalformedEnvelope)
	}
	if len(value) > maxEnvelopeSize {
		return envelope{}, fmt.Errorf("mtls: envelope of %d bytes, at most %d: %w", len(value), maxEnvelopeSize, ErrMalformedEnvelope)
	}
	if len(value) < len(envelopeMagic)+2 {
		return envelope{}, fmt.Errorf("mtls: envelope truncated in its header: %w", ErrMalformedEnvelope)
	}
	if v := value[len(envelopeMagic)]; v != envelopeVersion {
		return envelope{}, fmt.Errorf("mtls: envelope version %d, this build reads version %d: %w", v, envelopeVersion, ErrMalformedEnvelope)
	}
	n := int(value[len(envelopeMagic)+1])
	hl := len(envelopeMagic) + 2 + n
	if len(value) < envelopeFixed+n+1 {
		return envelope{}, fmt.Errorf("mtls: envelope of %d bytes is truncated: %w", len(value), ErrMalformedEnvelope)
	}
	e := envelope{header: value[:hl], kekID: string(value[hl-n : hl])}
	if err := validateKEKID(e.kekID); err != nil {
		return envelope{}, fmt.Errorf("mtls: envelope names a bad key-encryption key ID: %w", ErrMalformedEnvelope)
	}
	rest := value[hl:]
	e.wrapNonce, rest = rest[:gcmNonceSize], rest[gcmNonceSize:]
	e.wrappedKey, rest = rest[:dataKeySize+gcmTagSize], rest[dataKeySize+gcmTagSize:]
	e.dataNonce, e.ciphertext = rest[:gcmNonceSize], rest[gcmNonceSize:]
	if len(e.ciphertext) < gcmTagSize+1 {
		return envelope{}, fmt.Errorf("mtls: envelope holds no sealed key: %w", ErrMalformedEnvelope)
	}
	return e, nil
}

// marshal returns the envelope's bytes.
func (e envelope) marshal() []byte {
	b := make([]byte, 0, len(e.header)+len(e.wrapNonce)+len(e.wrappedKey)+len(e.dataNonce)+len(e.ciphertext))
	b = append(b, e.header...)
	b = append(b, e.wrapNonce...)
	b = append(b, e.wrappedKey...)
	b = append(b, e.dataNonce...)
	return append(b, e.ciphertext...)
}

func envelopeHeader(kekID string) []byte {
	h := make([]byte, 0, len(envelopeMagic)+2+len(kekID))
	h = append(h, envelopeMagic...)
	h = append(h, envelopeVersion, byte(len(kekID)))
	return append(h, kekID...)
}

// aad is the additional authenticated data of both seals.
func aad(header []byte, etcdKey string) []byte {
	a := make([]byte, 0, len(header)+len(etcdKey))
	return append(append(a, header...), etcdKey...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts a private key (PEM) for storage at etcdKey with envelope
// encryption: a fresh random data key encrypts the PEM with AES-256-GCM and
// the primary KEK wraps the data key with AES-256-GCM. Both bind the
// envelope header and etcdKey as additional authenticated data, so the
// result opens only at etcdKey (KeyKey gives it) and with the KEK it names.
func (r *Keyring) Seal(etcdKey string, keyPEM []byte) ([]byte, error) {
	if len(keyPEM) == 0 {
		return nil, fmt.Errorf("mtls: seal %s: empty private key", etcdKey)
	}
	if len(keyPEM) > maxEnvelopeSize-envelopeFixed-maxKEKIDLen {
		return nil, fmt.Errorf("mtls: seal %s: private key of %d bytes is too large", etcdKey, len(keyPEM))
	}
	dataKey := make([]byte, dataKeySize)
	nonces := make([]byte, 2*gcmNonceSize)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("mtls: seal %s: %w", etcdKey, err)
	}
	defer clear(dataKey)
	if _, err := rand.Read(nonces); err != nil {
		return nil, fmt.Errorf("mtls: seal %s: %w", etcdKey, err)
	}
	kek, err := newGCM(r.primary.key)
	if err != nil {
		return nil, fmt.Errorf("mtls: seal %s: %w", etcdKey, err)
	}
	dek, err := newGCM(dataKey)
	if err != nil {
		return nil, fmt.Errorf("mtls: seal %s: %w", etcdKey, err)
	}
	e := envelope{header: envelopeHeader(r.primary.id), wrapNonce: nonces[:gcmNonceSize], dataNonce: nonces[gcmNonceSize:]}
	ad := aad(e.header, etcdKey)
	e.wrappedKey = kek.Seal(nil, e.wrapNonce, dataKey, ad)
	e.ciphertext = dek.Seal(nil, e.dataNonce, keyPEM, ad)
	return e.marshal(), nil
}

// Open decrypts an envelope read from etcdKey and returns the private key
// PEM. It fails with an error wrapping ErrMalformedEnvelope for a value that
// is not an envelope this build reads, ErrUnknownKEK when the envelope
// names a KEK not in the keyring, and ErrUnseal when authentication fails
// (wrong KEK bytes under a known ID, an altered envelope, or one sealed for
// another etcd key). Errors never contain key material.
func (r *Keyring) Open(etcdKey string, value []byte) ([]byte, error) {
	e, err := parseEnvelope(value)
	if err != nil {
		return nil, err
	}
	k, ok := r.byID[e.kekID]
	if !ok {
		return nil, fmt.Errorf("mtls: %s is sealed with key-encryption key %q; the keyring holds %v: %w", etcdKey, e.kekID, r.IDs(), ErrUnknownKEK)
	}
	kek, err := newGCM(k.key)
	if err != nil {
		return nil, err
	}
	ad := aad(e.header, etcdKey)
	dataKey, err := kek.Open(nil, e.wrapNonce, e.wrappedKey, ad)
	if err != nil {
		return nil, fmt.Errorf("mtls: %s: data key does not authenticate with key-encryption key %q (wrong key, altered value, or sealed for another etcd key): %w",
			etcdKey, e.kekID, ErrUnseal)
	}
	defer clear(dataKey)
	dek, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := dek.Open(nil, e.dataNonce, e.ciphertext, ad)
	if err != nil {
		return nil, fmt.Errorf("mtls: %s: sealed key does not authenticate (altered value): %w", etcdKey, ErrUnseal)
	}
	return keyPEM, nil
}

// SealedBy returns the ID of the key-encryption key that sealed value, or
// ok=false when value is not an envelope (a plain PEM key, garbage).
func SealedBy(value []byte) (kekID string, ok bool) {
	e, err := parseEnvelope(value)
	if err != nil {
		return "", false
	}
	return e.kekID, true
}
