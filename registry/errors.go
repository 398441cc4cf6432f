package registry

import "errors"

// Errors that callers branch on. They are wrapped with details; test them
// with errors.Is.
var (
	// ErrDuplicateInstance is returned by Register when a live
	// registration of the same service and instance ID exists at another
	// address. (At the same address it is the instance's own registration
	// from before a restart, and Register takes it over.)
	ErrDuplicateInstance = errors.New("instance already registered")
	// ErrInvalidInstance is wrapped by errors about an Instance that cannot
	// be registered or an etcd value that cannot be decoded into one.
	ErrInvalidInstance = errors.New("invalid instance")
	// ErrClosed is returned by calls on a closed Registration.
	ErrClosed = errors.New("registration closed")
	// ErrIdentityChanged is returned by Update when the change names
	// another service or instance ID.
	ErrIdentityChanged = errors.New("service or id changed")
	// ErrNotRegistered is returned by Update when the new value could not
	// be written because the registration does not hold its key right now:
	// it is Lost, or the key was deleted or taken out of band. The value
	// is kept; the registration writes it as soon as it holds the key
	// again.
	ErrNotRegistered = errors.New("not registered")
)
