package mtls

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the etcd prefix of the certificate key schema:
//
//	/certs/ca                 PEM bundle of trusted CAs
//	/certs/ca.sig             optional detached signature of the bundle (SignBundle)
//	/certs/revoked            the revocation list (JSON, see Revocation)
//	/certs/<name>/tls.crt     PEM certificate chain of identity <name>
//	/certs/<name>/tls.key     its private key, sealed (or plain PEM if allowed)
//	/certs/<name>/clients     optional: the clients a server presenting <name> accepts (JSON, see ClientPolicy)
const DefaultPrefix = "/certs"

// Names of the keys of the schema below the prefix.
const (
	caName      = "ca"
	caSigName   = "ca.sig"
	revokedName = "revoked"
	certFile    = "tls.crt"
	keyFile     = "tls.key"
	clientsFile = "clients"
)

// maxNameLen bounds identity names; they become metric label values.
const maxNameLen = 128

// normPrefix returns prefix without trailing slashes, DefaultPrefix when it
// is empty, and "/" for the root. It is idempotent: a prefix normalized by
// an option and again by a key function is the same prefix (the root once
// turned into "" and then into DefaultPrefix).
func normPrefix(prefix string) string {
	if prefix == "" {
		return DefaultPrefix
	}
	if p := strings.TrimRight(prefix, "/"); p != "" {
		return p
	}
	return "/"
}

// under returns the normalized prefix p with its trailing "/": what every
// key of the schema starts with.
func under(p string) string {
	if p == "/" {
		return p
	}
	return p + "/"
}

// CAKey returns the etcd key of the CA bundle: <prefix>/ca. An empty prefix
// means DefaultPrefix.
func CAKey(prefix string) string { return under(normPrefix(prefix)) + caName }

// CertKey returns the etcd key of identity name's certificate chain:
// <prefix>/<name>/tls.crt.
func CertKey(prefix, name string) string {
	return under(normPrefix(prefix)) + name + "/" + certFile
}

// KeyKey returns the etcd key of identity name's private key:
// <prefix>/<name>/tls.key. It is also the additional authenticated data of
// the key's envelope, so a sealed key opens only under this key.
func KeyKey(prefix, name string) string {
	return under(normPrefix(prefix)) + name + "/" + keyFile
}

// CASignatureKey returns the etcd key of the CA bundle's detached
// signature: <prefix>/ca.sig.
func CASignatureKey(prefix string) string { return under(normPrefix(prefix)) + caSigName }

// RevokedKey returns the etcd key of the revocation list:
// <prefix>/revoked.
func RevokedKey(prefix string) string { return under(normPrefix(prefix)) + revokedName }

// ClientsKey returns the etcd key of the client policy of identity name:
// <prefix>/<name>/clients, the clients a server presenting name accepts.
func ClientsKey(prefix, name string) string {
	return under(normPrefix(prefix)) + name + "/" + clientsFile
}

// ValidateName checks that name can be an identity: non-empty, at most 128
// bytes of letters, digits, '.', '-' and '_', and not "ca", which names the
// CA bundle.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("mtls: empty identity name: %w", ErrInvalidName)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("mtls: identity name of %d bytes, at most %d: %w", len(name), maxNameLen, ErrInvalidName)
	}
	if name == caName {
		return fmt.Errorf("mtls: identity name %q is reserved for the CA bundle: %w", name, ErrInvalidName)
	}
	for _, r := range name {
		if !nameChar(r) {
			return fmt.Errorf("mtls: identity name %q: character %q is not a letter, digit, '.', '-' or '_': %w", name, r, ErrInvalidName)
		}
	}
	return nil
}

func nameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
}

// keyKind is what a key under the prefix holds.
type keyKind int

const (
	kindOther keyKind = iota // not part of the schema; ignored
	kindCA
	kindCASig
	kindRevoked
	kindCert
	kindKey
	kindClients
)

// parseKey classifies an etcd key under the prefix p (normalised, without
// the trailing '/').
func parseKey(p, key string) (kind keyKind, name string) {
	rest, ok := strings.CutPrefix(key, under(p))
	if !ok {
		return kindOther, ""
	}
	switch rest {
	case caName:
		return kindCA, ""
	case caSigName:
		return kindCASig, ""
	case revokedName:
		return kindRevoked, ""
	}
	name, file, ok := strings.Cut(rest, "/")
	if !ok || ValidateName(name) != nil {
		return kindOther, ""
	}
	switch file {
	case certFile:
		return kindCert, name
	case keyFile:
		return kindKey, name
	case clientsFile:
		return kindClients, name
	}
	return kindOther, ""
}
