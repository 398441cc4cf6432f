package resolver

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"
)

// Resolver finds the endpoints of one target and follows their changes.
type Resolver interface {
	// Watch calls update with the complete endpoint set of the target:
	// first the current set, then the whole set again after every change,
	// until ctx ends; it then returns ctx's error (or an error that stopped
	// it for good, such as a closed etcd client). Calls to update are
	// serial and come from the goroutine that called Watch; update must
	// not block for long.
	//
	// A failed refresh is reported as a State whose Err is set and whose
	// Endpoints are the last good set: stale beats empty.
	Watch(ctx context.Context, update func(State)) error
}

// State is one delivery of a Resolver: the complete set, or an error with
// the last good set.
type State struct {
	// Endpoints is the complete set, sorted by Addr. After a failure it is
	// the last good set.
	Endpoints []Endpoint
	// Err is nil after a successful refresh; otherwise it says why the
	// latest refresh failed.
	Err error
}

// Endpoint is one address of a target with the attributes routing uses.
type Endpoint struct {
	// Addr is host:port, where clients connect.
	Addr string
	// Weight is the relative share for weighted policies; 0 means the
	// default weight (registry.DefaultWeight). SRV weights land here.
	Weight uint32
	// Zone is the failure domain, for zone preference.
	Zone string
	// Labels select subsets, e.g. canary=true.
	Labels map[string]string
	// Draining endpoints finish their requests and get no new ones.
	Draining bool
	// Origin says where the endpoint came from, for diagnosis (lbprobe).
	Origin Origin
}

// Origin describes the record an Endpoint was read from.
type Origin struct {
	// Kind is "etcd", "dns-a", "dns-aaaa", "dns-srv" or "static".
	Kind string
	// Name is the etcd key, or the DNS name that was queried.
	Name string
	// ID is the registry instance ID (etcd), empty otherwise.
	ID string
	// Version is the registered instance's version (etcd).
	Version string
	// Revision is the etcd ModRevision of the key.
	Revision int64
	// Lease is the etcd lease the key is attached to (0 for none).
	Lease int64
	// TTL is the DNS record TTL.
	TTL time.Duration
	// Priority is the SRV priority (lower is preferred).
	Priority uint16
}

// Equal reports whether e and o have the same address and attributes. The
// Origin is not compared: a refresh that changes only a TTL or a revision
// is not a change of the set.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.Addr == o.Addr && e.Weight == o.Weight && e.Zone == o.Zone &&
		e.Draining == o.Draining && maps.Equal(e.Labels, o.Labels)
}

// String returns the address.
func (e Endpoint) String() string { return e.Addr }

// SameEndpoints reports whether two sets hold equal endpoints in the same
// order. Resolvers use it to deliver only real changes.
func SameEndpoints(a, b []Endpoint) bool {
	return slices.EqualFunc(a, b, Endpoint.Equal)
}

// SortEndpoints sorts a set by address, the order every State carries.
func SortEndpoints(eps []Endpoint) {
	slices.SortFunc(eps, func(a, b Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
}
