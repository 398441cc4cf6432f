package mtls

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Errors that callers branch on. They are wrapped with details; test them
// with errors.Is.
var (
	// ErrClosed is returned by Ready and WaitRevision on a closed Store.
	ErrClosed = errors.New("mtls: store closed")
	// ErrNotReady is wrapped by Ready's error when its context ends before
	// the CA bundle and the identities it waits for are loaded.
	ErrNotReady = errors.New("store not ready")
	// ErrNoIdentity is returned by the tls.Config hooks when the identity
	// they serve has no good material loaded (yet).
	ErrNoIdentity = errors.New("identity has no certificate loaded")
	// ErrNoCABundle is returned when a certificate must be verified and no
	// good CA bundle is loaded.
	ErrNoCABundle = errors.New("no CA bundle loaded")
	// ErrInvalidName is wrapped by errors about an identity name that does
	// not fit the key schema.
	ErrInvalidName = errors.New("invalid identity name")
	// ErrInvalidKEK is wrapped by errors about a key-encryption key that
	// cannot be used: wrong length, bad encoding, bad ID.
	ErrInvalidKEK = errors.New("invalid key-encryption key")
	// ErrNoKeyring is returned when a private key must be sealed or opened
	// and no Keyring was given (WithKeyring).
	ErrNoKeyring = errors.New("no keyring configured")
	// ErrMalformedEnvelope is wrapped by Open's error for a value that is not
	// a well-formed sealed-key envelope of a known version.
	ErrMalformedEnvelope = errors.New("malformed sealed-key envelope")
	// ErrUnknownKEK is wrapped by Open's error when the envelope names a
	// key-encryption key that is not in the keyring.
	ErrUnknownKEK = errors.New("key-encryption key not in keyring")
	// ErrUnseal is wrapped by Open's error when authentication fails: the
	// key-encryption key is wrong, the envelope was altered, or it was
	// sealed for another etcd key.
	ErrUnseal = errors.New("cannot unseal")
	// ErrOrphanedIdentity is wrapped by PublishCA's error when identities
	// under the prefix would no longer chain to the new bundle, and by the
	// Store's error when it refuses such a bundle (ReasonOrphaned).
	ErrOrphanedIdentity = errors.New("identities would no longer chain to the CA bundle")
	// ErrConflict is wrapped by the errors of Publish, PublishCA and Reseal
	// when etcd kept changing under them between their read and their
	// write.
	ErrConflict = errors.New("concurrent changes in etcd")
	// ErrUnpinned is wrapped by the errors about a CA bundle that fails
	// the pinned trust anchors or bundle signers (WithTrustAnchors,
	// WithBundleSigners): PublishCA's and the Store's (ReasonUnpinned).
	ErrUnpinned = errors.New("CA bundle not signed by a pinned trust anchor or key")
	// ErrRevoked is wrapped by the errors about a certificate on the
	// revocation list: a peer's in a handshake, an identity's in the
	// Store (ReasonRevoked) or in Publish.
	ErrRevoked = errors.New("certificate revoked")
	// ErrNotAuthorized is wrapped by a handshake's error when the peer's
	// certificate is valid but its identity is not allowed
	// (WithAllowedClients, WithAllowedServers, or <prefix>/<name>/clients).
	ErrNotAuthorized = errors.New("peer identity not authorized")
)

// Reason says why a value was refused. It is the "reason" label of
// smartroute_mtls_rejected_total; the set is small and fixed.
type Reason string

// Reasons for refusing a value read from etcd.
const (
	// ReasonMalformed: the PEM or the sealed-key envelope does not parse,
	// or the key is legacy encrypted PEM (RFC 1423).
	ReasonMalformed Reason = "malformed"
	// ReasonPlainKey: the private key is plain PEM and plain keys are not
	// allowed (WithAllowPlaintextKeys).
	ReasonPlainKey Reason = "plain_key"
	// ReasonUnseal: the sealed key cannot be opened: no keyring, a
	// key-encryption key not in the keyring, the wrong key, an altered
	// envelope, or one sealed for another etcd key.
	ReasonUnseal Reason = "unseal"
	// ReasonKeyMismatch: the private key does not belong to the
	// certificate.
	ReasonKeyMismatch Reason = "key_mismatch"
	// ReasonExpired: a certificate's validity has ended.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: a certificate's validity has not begun.
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonUntrusted: the certificate does not chain to the current CA
	// bundle (or no bundle is loaded).
	ReasonUntrusted Reason = "untrusted"
	// ReasonNotCA: the CA bundle holds a certificate that is not a CA.
	ReasonNotCA Reason = "not_ca"
	// ReasonOrphaned: a new CA bundle no longer trusts an identity that is
	// in use and still present in etcd; the whole bundle is refused (see
	// the package documentation on rotating the CA by overlap).
	ReasonOrphaned Reason = "orphaned"
	// ReasonIncomplete: a certificate without its key, or a key without its
	// certificate.
	ReasonIncomplete Reason = "incomplete"
	// ReasonDeleted: the material was deleted from etcd; the last good
	// material stays in use (unless WithDropDeleted).
	ReasonDeleted Reason = "deleted"
	// ReasonUnpinned: a CA bundle whose CAs do not all chain to a pinned
	// trust anchor and that carries no valid signature by a pinned key
	// (or one older than the bundle in use).
	ReasonUnpinned Reason = "unpinned"
	// ReasonRevoked: the certificate is on the revocation list.
	ReasonRevoked Reason = "revoked"
)

// ValidationError is a value refused by validation: by the Store for what
// it reads from etcd, by Publish and PublishCA for what they are asked to
// write. It never holds the value itself.
type ValidationError struct {
	Key      string // the etcd key of the value ("" for Publish input)
	Revision int64  // its ModRevision; 0 for Publish input
	Reason   Reason
	Err      error
}

func (e *ValidationError) Error() string {
	switch {
	case e.Key == "":
		return fmt.Sprintf("mtls: refused (%s): %v", e.Reason, e.Err)
	case e.Revision == 0:
		return fmt.Sprintf("mtls: %s refused (%s): %v", e.Key, e.Reason, e.Err)
	}
	return fmt.Sprintf("mtls: %s at revision %d refused (%s): %v", e.Key, e.Revision, e.Reason, e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// MarshalJSON writes the key, revision, reason and message (an error
// value has no JSON form of its own).
func (e *ValidationError) MarshalJSON() ([]byte, error) {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	return json.Marshal(struct {
		Key      string `json:"key,omitempty"`
		Revision int64  `json:"revision,omitempty"`
		Reason   Reason `json:"reason"`
		Error    string `json:"error"`
	}{e.Key, e.Revision, e.Reason, msg})
}

// reject returns a *ValidationError for a value not yet tied to a key.
func reject(reason Reason, format string, args ...any) *ValidationError {
	return &ValidationError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// at ties a validation error to the etcd key and revision it came from.
func (e *ValidationError) at(key string, rev int64) *ValidationError {
	c := *e
	c.Key, c.Revision = key, rev
	return &c
}
