package overload

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
)

// Limits are Envoy's cluster circuit breakers for one service: bounds on
// the requests in flight, the requests waiting for one of them, and the
// retries in flight. Past them a request fails at once with
// ErrConcurrencyLimit instead of joining an unbounded queue in front of a
// service that is not keeping up. Zero fields take their defaults; NoLimit
// turns a bound off.
type Limits struct {
	// MaxRequests bounds the requests in flight, retries included
	// (default DefaultMaxRequests).
	MaxRequests int `json:"maxRequests,omitempty"`
	// MaxPending bounds the requests that wait, in Acquire, for a request
	// in flight to finish (default DefaultMaxPending: none wait). A
	// waiting request gives up when its context ends.
	MaxPending int `json:"maxPending,omitempty"`
	// MaxRetries bounds the retries in flight (AcquireRetry; default
	// DefaultMaxRetries).
	MaxRetries int `json:"maxRetries,omitempty"`
}

// NoLimit as a field of Limits turns that bound off.
const NoLimit = -1

// Defaults of Limits: Envoy's cluster circuit-breaker thresholds, except
// pending.
const (
	// DefaultMaxRequests is Envoy's max_requests: enough for any
	// service a single client should be sending to at once, and a bound
	// on the goroutines, connections and memory a hung service can tie
	// up.
	DefaultMaxRequests = 1024
	// DefaultMaxPending is 0: a request over the limit fails at once.
	// Envoy's max_pending_requests (1024) bounds the queue of its HTTP/1
	// connection pool; http.Transport keeps its own such queue
	// (MaxConnsPerHost), and a second one in front of a saturated
	// service only adds latency.
	DefaultMaxPending = 0
	// DefaultMaxRetries is Envoy's max_retries: retries are what turns a
	// slow service into an overloaded one, so only a few may be in
	// flight at once (a retry budget bounds their rate besides).
	DefaultMaxRetries = 3
)

func (l Limits) withDefaults() Limits {
	if l.MaxRequests == 0 {
		l.MaxRequests = DefaultMaxRequests
	}
	if l.MaxPending == 0 {
		l.MaxPending = DefaultMaxPending
	}
	if l.MaxRetries == 0 {
		l.MaxRetries = DefaultMaxRetries
	}
	return l
}

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"maxRequests", l.MaxRequests}, {"maxPending", l.MaxPending}, {"maxRetries", l.MaxRetries}} {
		if f.v < NoLimit {
			return fmt.Errorf("overload: limits: %s %d must be positive, or NoLimit (-1)", f.name, f.v)
		}
	}
	return nil
}

// limiter bounds how many holders it has at once, exactly: a slot is
// taken by compare-and-swap below the bound, so no interleaving of
// acquires and releases ever lets more than max through. Up to maxPending
// callers may wait for a slot, in FIFO order; a released slot is handed to
// the first waiter.
type limiter struct {
	max        int64 // 0: no bound (the count is kept all the same)
	maxPending int64 // 0: nobody waits
	inflight   atomic.Int64
	pending    atomic.Int64

	mu      sync.Mutex
	waiters []*waiter
}

type waiter struct {
	ready chan struct{} // closed when the waiter owns a slot
}

// newLimiter returns a limiter: maxInFlight below 1 is no bound;
// maxPending 0 lets nobody wait, NoLimit lets any number wait.
func newLimiter(maxInFlight, maxPending int) *limiter {
	l := &limiter{max: int64(max(maxInFlight, 0)), maxPending: int64(max(maxPending, 0))}
	if maxPending < 0 {
		l.maxPending = math.MaxInt64
	}
	return l
}

// tryAcquire takes a slot if one is free.
func (l *limiter) tryAcquire() bool {
	if l.max == 0 {
		l.inflight.Add(1)
		return true
	}
	for {
		n := l.inflight.Load()
		if n >= l.max {
			return false
		}
		if l.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// acquire takes a slot, waiting for one (while ctx lasts) when waiting is
// allowed and the queue has room. It returns errLimit when no slot is free
// and no wait is possible (a ctx that has already ended never waits), or
// ctx's error.
func (l *limiter) acquire(ctx context.Context) error {
	if l.pending.Load() == 0 && l.tryAcquire() {
		return nil
	}
	if l.maxPending == 0 || ctx.Err() != nil {
		return errLimit
	}
	l.mu.Lock()
	// Count as pending before looking again, so that a release between
	// the look and the enqueue sees us and hands us its slot (release
	// frees, then looks at pending).
	l.pending.Add(1)
	if len(l.waiters) == 0 && l.tryAcquire() {
		l.pending.Add(-1)
		l.mu.Unlock()
		return nil
	}
	if int64(len(l.waiters)) >= l.maxPending {
		l.pending.Add(-1)
		l.mu.Unlock()
		return errPending
	}
	w := &waiter{ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.pending.Add(-1)
			l.mu.Unlock()
			return ctx.Err()
		}
	}
	l.mu.Unlock()
	// Handed a slot as ctx ended: give it back.
	l.release()
	return ctx.Err()
}

// release gives a slot back, to the first waiter if there is one.
func (l *limiter) release() {
	l.inflight.Add(-1)
	if l.pending.Load() > 0 {
		l.wake()
	}
}

// wake hands free slots to waiters, first come first served.
func (l *limiter) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.waiters) > 0 && l.tryAcquire() {
		w := l.waiters[0]
		l.waiters[0] = nil
		l.waiters = l.waiters[1:]
		l.pending.Add(-1)
		close(w.ready)
	}
}

// inFlight returns the slots taken now.
func (l *limiter) inFlight() int64 { return l.inflight.Load() }

// errLimit and errPending are the limiter's refusals; the guard turns them
// into RejectedErrors.
var (
	errLimit   = fmt.Errorf("no slot free")
	errPending = fmt.Errorf("no slot free and the wait queue is full")
)
