package mtls

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// KEKSize is the length of a key-encryption key: 32 bytes, for AES-256.
const KEKSize = 32

// maxKEKIDLen bounds a key-encryption key ID; it is written in every
// envelope with a one-byte length.
const maxKEKIDLen = 64

// KEK is a key-encryption key: 32 secret bytes for AES-256-GCM and the ID
// written in every envelope it seals, so that a Keyring can hold several
// keys while one is rotated out.
//
// A KEK never prints its bytes: String, GoString and LogValue show only the
// ID. The zero KEK is not usable.
type KEK struct {
	id  string
	key []byte
}

// NewKEK returns a KEK with the given ID and key. key must be KEKSize bytes;
// it is copied. The ID is 1 to 64 letters, digits, '.', '-' or '_' (name it
// after when or what, e.g. "kek-2025-06").
func NewKEK(id string, key []byte) (KEK, error) {
	if err := validateKEKID(id); err != nil {
		return KEK{}, err
	}
	if len(key) != KEKSize {
		return KEK{}, fmt.Errorf("mtls: key-encryption key %q is %d bytes, want %d: %w", id, len(key), KEKSize, ErrInvalidKEK)
	}
	return KEK{id: id, key: bytes.Clone(key)}, nil
}

// GenerateKEK returns a new random KEK with the given ID.
func GenerateKEK(id string) (KEK, error) {
	key := make([]byte, KEKSize)
	if _, err := rand.Read(key); err != nil {
		return KEK{}, fmt.Errorf("mtls: generate key-encryption key: %w", err)
	}
	return NewKEK(id, key)
}

// ParseKEK decodes a KEK from the text of a file or an environment
// variable. Accepted forms:
//
//   - 64 hexadecimal digits;
//   - base64 of 32 bytes, standard or URL alphabet, padded or not;
//   - exactly 32 raw bytes, binary (as from `head -c 32 /dev/urandom`).
//
// Surrounding white space (a trailing newline) is ignored in the text
// forms. 32 bytes of printable text are refused: that is a password or a
// shorter key in hex or base64, not 256 bits of key. The ID is not part of
// the text: the caller names the key.
func ParseKEK(id string, text []byte) (KEK, error) {
	if err := validateKEKID(id); err != nil {
		return KEK{}, err
	}
	s := string(bytes.TrimSpace(text))
	if len(s) == 2*KEKSize {
		if key, err := hex.DecodeString(s); err == nil {
			return NewKEK(id, key)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil && len(key) == KEKSize {
			return NewKEK(id, key)
		}
	}
	if len(text) == KEKSize && !printable(text) {
		return NewKEK(id, text)
	}
	return KEK{}, fmt.Errorf("mtls: key-encryption key %q: %d bytes that are neither hex or base64 of 32 bytes nor 32 raw binary bytes: %w",
		id, len(text), ErrInvalidKEK)
}

// printable reports whether b is all printable ASCII: text, not a random
// binary key (32 random bytes are all printable with odds of about 1e-14).
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// LoadKEKFile reads a KEK from a file, in one of the forms ParseKEK
// accepts.
func LoadKEKFile(id, path string) (KEK, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return KEK{}, fmt.Errorf("mtls: key-encryption key %q: %w", id, err)
	}
	k, err := ParseKEK(id, text)
	clear(text)
	if err != nil {
		return KEK{}, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// LoadKEKEnv reads a KEK from the environment variable name, in one of the
// text forms ParseKEK accepts (hex or base64).
func LoadKEKEnv(id, name string) (KEK, error) {
	text, ok := os.LookupEnv(name)
	if !ok || text == "" {
		return KEK{}, fmt.Errorf("mtls: key-encryption key %q: environment variable %s is not set: %w", id, name, ErrInvalidKEK)
	}
	k, err := ParseKEK(id, []byte(text))
	if err != nil {
		return KEK{}, fmt.Errorf("%w (environment variable %s)", err, name)
	}
	return k, nil
}

// ID returns the key's ID.
func (k KEK) ID() string { return k.id }

// String returns "mtls.KEK(<id>)", never the key.
func (k KEK) String() string { return "mtls.KEK(" + k.id + ")" }

// GoString is String, so that %#v does not print the key either.
func (k KEK) GoString() string { return k.String() }

// LogValue logs only the ID.
func (k KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

func validateKEKID(id string) error {
	if id == "" || len(id) > maxKEKIDLen {
		return fmt.Errorf("mtls: key-encryption key ID %q: want 1 to %d characters: %w", id, maxKEKIDLen, ErrInvalidKEK)
	}
	for _, r := range id {
		if !nameChar(r) {
			return fmt.Errorf("mtls: key-encryption key ID %q: character %q is not a letter, digit, '.', '-' or '_': %w", id, r, ErrInvalidKEK)
		}
	}
	return nil
}

// Keyring holds the key-encryption keys a process may open envelopes with,
// by ID, and the primary one it seals with. Rotating a KEK:
//
//  1. add the new KEK to every keyring, not as primary;
//  2. make it the primary where keys are sealed (Publish, Reseal);
//  3. seal every key again with Reseal;
//  4. remove the old KEK from every keyring.
//
// A Keyring is immutable and safe for concurrent use.
type Keyring struct {
	primary KEK
	byID    map[string]KEK
}

// NewKeyring returns a keyring that seals with primary and opens envelopes
// sealed with primary or any of others. Two keys with the same ID and
// different bytes are an error; exact duplicates are merged.
func NewKeyring(primary KEK, others ...KEK) (*Keyring, error) {
	r := &Keyring{primary: primary, byID: make(map[string]KEK, 1+len(others))}
	for _, k := range append([]KEK{primary}, others...) {
		if len(k.key) != KEKSize {
			return nil, fmt.Errorf("mtls: keyring: key-encryption key %q is not initialised (use NewKEK, ParseKEK or a Load function): %w", k.id, ErrInvalidKEK)
		}
		if prev, ok := r.byID[k.id]; ok && subtle.ConstantTimeCompare(prev.key, k.key) != 1 {
			return nil, fmt.Errorf("mtls: keyring: two different key-encryption keys with ID %q: %w", k.id, ErrInvalidKEK)
		}
		r.byID[k.id] = k
	}
	return r, nil
}

// Primary returns the ID of the key that Seal uses.
func (r *Keyring) Primary() string { return r.primary.id }

// IDs returns the IDs of every key in the keyring, sorted.
func (r *Keyring) IDs() []string {
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// String lists the IDs, never the keys.
func (r *Keyring) String() string {
	return fmt.Sprintf("mtls.Keyring(primary %s; %s)", r.primary.id, strings.Join(r.IDs(), ", "))
}

// LogValue logs the IDs only.
func (r *Keyring) LogValue() slog.Value { return slog.StringValue(r.String()) }
