package registry

import "errors"

// Errors that callers branch on. They are wrapped with details; test them
// with errors.Is.
var (
	// ErrDuplicateInstance is returned by Register when a live registration
	// of the same service and instance ID already exists.
	ErrDuplicateInstance = errors.New("instance already registered")
	// ErrInvalidInstance is wrapped by errors about an Instance that cannot
	// be registered or an etcd value that cannot be decoded into one.
	ErrInvalidInstance = errors.New("invalid instance")
	// ErrClosed is returned by calls on a closed Registration.
	ErrClosed = errors.New("registration closed")
	// ErrIdentityChanged is returned by Update when the new value names
	// another service or instance ID.
	ErrIdentityChanged = errors.New("service or id changed")
)
