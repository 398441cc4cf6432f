package client

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/resolver"
)

// endpoint is the table's state for one address. It survives membership
// changes: an update that adds or changes other endpoints does not reset
// what was learned about this one. The pick path reads it through atomics
// only.
type endpoint struct {
	addr string
	// pos is the endpoint's index in the table's address order, set under
	// the table's lock when membership changes (and read only under it).
	pos int
	// listed is the table's update stamp of the latest resolver state
	// that listed the endpoint (under the table's lock).
	listed uint64
	// poolIdx is the endpoint's index in the pool its first attempts are
	// picked from (set when a snapshot is built), so that an answer can
	// name it to that pool as a vacancy (see pool.vacancy).
	poolIdx atomic.Int32

	// attrs are the resolver's attributes (weight, zone, labels, draining),
	// replaced as a whole when they change.
	attrs atomic.Pointer[resolver.Endpoint]

	// hot is what picks read (load, latency estimate, penalty, load
	// reports), in its own cache-line-aligned block; mu serializes the
	// updates of its estimate and penalty (once per request, never per
	// pick).
	hot *hotState
	mu  sync.Mutex

	// Passive figures from real requests.
	requests atomic.Uint64
	failures atomic.Uint64

	// Active figures from the prober.
	health   atomic.Int32 // probe.Health
	probeRTT atomic.Int64 // smoothed probe RTT, ns
	probeErr atomic.Pointer[string]

	// Outlier detection (see outlier.go).
	consecutiveFailures atomic.Int32
	ejectedUntil        atomic.Int64 // nanotime; 0 when not ejected
	ejections           atomic.Int32 // ejections so far, for the growing ejection time
	lastUnejected       atomic.Int64 // nanotime of the last return from ejection
	ejectReason         atomic.Pointer[string]

	// activeSince is when the endpoint last became pickable (added, or back
	// from ejection or ill health), for slow start.
	activeSince atomic.Int64

	// removed is set once the resolver dropped the endpoint; its idle
	// connections are closed when its last request ends.
	removed atomic.Bool

	// transport is the per-endpoint HTTP transport, created on first use.
	transport atomic.Pointer[http.Transport]
	// transportBorn is when transport was made (nanotime), for
	// WithMaxConnectionAge.
	transportBorn atomic.Int64

	// child is the gRPC balancer's pickfirst child for this endpoint, and
	// dones its Done callbacks.
	child atomic.Pointer[grpcChild]
	dones atomic.Pointer[grpcDones]

	// busy counts answers that refused work (429, 503, ResourceExhausted).
	busy atomic.Uint64
	// ov is the endpoint's overload protection (overload.go).
	ov endpointOverload
}

func newEndpoint(e resolver.Endpoint, now int64) *endpoint {
	ep := &endpoint{addr: e.Addr, hot: new(hotState)}
	ep.attrs.Store(&e)
	ep.activeSince.Store(now)
	return ep
}

// slabMin is the fewest new endpoints an update allocates in one block
// (endpointSlab): a block of hot states that large is a large object, page
// aligned, so each hot state keeps its own cache lines as new(hotState)
// gives them.
const slabMin = 256

// endpointSlab hands out endpoints allocated together: an update that adds
// thousands of endpoints makes three allocations rather than three per
// endpoint, which was most of the time a full update of 10,000 took, in
// the allocator and the collector.
type endpointSlab struct {
	eps   []endpoint
	hots  []hotState
	attrs []resolver.Endpoint
}

// newEndpointSlab returns a slab for n endpoints, or nil when n is too few
// to be worth one (newEndpoint then allocates each).
func newEndpointSlab(n int) *endpointSlab {
	if n < slabMin {
		return nil
	}
	return &endpointSlab{eps: make([]endpoint, n), hots: make([]hotState, n), attrs: make([]resolver.Endpoint, n)}
}

// newEndpoint is the package's newEndpoint, from the slab while it lasts.
func (s *endpointSlab) newEndpoint(e resolver.Endpoint, now int64) *endpoint {
	if s == nil || len(s.eps) == 0 {
		return newEndpoint(e, now)
	}
	ep, h, a := &s.eps[0], &s.hots[0], &s.attrs[0]
	s.eps, s.hots, s.attrs = s.eps[1:], s.hots[1:], s.attrs[1:]
	*a = e
	ep.addr, ep.hot = e.Addr, h
	ep.attrs.Store(a)
	ep.activeSince.Store(now)
	return ep
}

// weight returns the resolver weight with the default applied.
func (ep *endpoint) weight() uint32 {
	w := ep.attrs.Load().Weight
	if w == 0 {
		return 1
	}
	return w
}

// ejected reports whether outlier detection has the endpoint out at now.
func (ep *endpoint) ejected(now int64) bool {
	until := ep.ejectedUntil.Load()
	return until != 0 && now < until
}

// slowStartFactor is the share (minShare..1) of its full attractiveness an
// endpoint has at now, growing linearly over window after it became
// active. A window of 0 disables slow start.
func (ep *endpoint) slowStartFactor(now int64, window time.Duration, minShare float64) float64 {
	if window <= 0 {
		return 1
	}
	age := now - ep.activeSince.Load()
	if age >= int64(window) {
		return 1
	}
	f := float64(age) / float64(window)
	return max(f, minShare)
}
