package resolver

import "errors"

// Errors that callers branch on. They are wrapped with details (the target,
// the record, the server); test them with errors.Is.
var (
	// ErrInvalidTarget is wrapped by Parse's errors about a malformed
	// target: a missing scheme, service, host or port, a bad address, an
	// authority or query where none is supported.
	ErrInvalidTarget = errors.New("invalid target")
	// ErrUnknownScheme is wrapped by Parse's error for a scheme other than
	// etcd, dns, dns+srv and static.
	ErrUnknownScheme = errors.New("unknown scheme")
	// ErrInvalidAddress is wrapped by errors about an address that is not
	// host:port with a port from 1 to 65535.
	ErrInvalidAddress = errors.New("invalid address")
	// ErrNotFound is reported by the DNS resolver when the name does not
	// exist (NXDOMAIN) or has no records of the type asked for.
	ErrNotFound = errors.New("no such name or no records")
	// ErrBadAnswer is reported by the DNS resolver for an answer it cannot
	// use: a malformed message, records of the wrong type or for another
	// name, a question that does not match the query.
	ErrBadAnswer = errors.New("bad dns answer")
	// ErrClientClosed is returned by the etcd resolver's Watch when its
	// etcd client was closed: nothing can be watched any more.
	ErrClientClosed = errors.New("etcd client closed")
)
