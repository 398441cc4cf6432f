package overload_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/smartroute/smartroute/overload"
)

// What a balancer built on a Guard needs besides Acquire and Done (package
// client uses all of it): giving back a ticket that was never sent,
// sending past an open breaker within the limit (panic mode), admitting
// without ever waiting, telling retries apart, and several listeners.

// Release gives back a ticket whose request never left: its slot, a
// half-open probe, and nothing counted for throttling, whatever the
// classifier would say.
func TestReleaseGivesTheTicketBackUncounted(t *testing.T) {
	clk := newFakeClock()
	always := func(overload.Outcome) overload.Verdict { return overload.NoAnswer }
	g := mustGuard(t, overload.WithClock(clk), overload.WithClassifier(always), overload.WithLimits(overload.Limits{MaxRequests: 1}),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 1, MinRequests: 1, RetryTimeout: time.Second, Probes: 1}))
	for range 50 {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tk.Release()
	}
	if st := g.Status(); st.InFlight != 0 || st.Requests != 0 || st.Breakers[0].State != overload.Closed {
		t.Fatalf("after 50 released tickets: %+v, want nothing held or counted and the breaker closed", st)
	}

	// A released probe frees its place for another request (throttling,
	// which the failure below feeds too, off for this part).
	g = mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 1, MinRequests: 1, RetryTimeout: time.Second, Probes: 1}))
	tk, _ := g.Acquire(context.Background())
	tk.Done(overload.Outcome{Err: errors.New("refused")})
	clk.Advance(time.Second)
	probe, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatalf("no probe after the retry timeout: %v", err)
	}
	if _, err := g.Acquire(context.Background()); !errors.Is(err, overload.ErrBreakerOpen) {
		t.Fatalf("a second probe was admitted: %v", err)
	}
	probe.Release()
	if _, err := g.Acquire(context.Background()); err != nil {
		t.Fatalf("the released probe's place was not given back: %v", err)
	}
}

// AcquireLimit sends to an endpoint whose breaker is open, within its
// limit; its outcome does not close the breaker (it is no probe).
func TestAcquireLimitPassesAnOpenBreakerButNotTheLimit(t *testing.T) {
	clk := newFakeClock()
	g := mustGuard(t, overload.WithClock(clk), overload.WithEndpointMaxRequests(2),
		overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio, MinRequests: 2}))
	e := g.Endpoint("10.0.0.1:443")
	for range 2 {
		tk, err := e.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tk.Done(overload.Outcome{Status: http.StatusInternalServerError})
	}
	if _, err := e.Acquire(context.Background()); !errors.Is(err, overload.ErrBreakerOpen) {
		t.Fatalf("Acquire on an open breaker: %v", err)
	}
	a, errA := e.AcquireLimit(context.Background())
	b, errB := e.AcquireLimit(context.Background())
	if errA != nil || errB != nil {
		t.Fatalf("AcquireLimit within the limit: %v, %v", errA, errB)
	}
	if _, err := e.AcquireLimit(context.Background()); !errors.Is(err, overload.ErrConcurrencyLimit) {
		t.Fatalf("AcquireLimit past the limit of 2: %v", err)
	}
	a.Done(overload.Outcome{Status: http.StatusOK})
	b.Done(overload.Outcome{Status: http.StatusOK})
	st := e.Status()
	if st.InFlight != 0 || st.MaxRequests != 2 || st.Breakers[0].State != overload.Open {
		t.Fatalf("after two successes past the breaker: %+v, want it still open, nothing in flight, limit 2", st)
	}
}

// A context that has already ended never waits for a slot: the request is
// refused at once, as a picker that must not block needs.
func TestAnEndedContextNeverWaitsForASlot(t *testing.T) {
	g := mustGuard(t, overload.WithLimits(overload.Limits{MaxRequests: 1, MaxPending: overload.NoLimit}))
	held, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Done(overload.Outcome{})
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = g.Acquire(ended)
	var rej *overload.RejectedError
	if !errors.As(err, &rej) || rej.Reason != overload.ReasonConcurrencyLimit {
		t.Fatalf("Acquire with an ended context and a full limit: %v, want a concurrency-limit refusal", err)
	}
	if st := g.Status(); st.Pending != 0 {
		t.Fatalf("%d requests pending, want none", st.Pending)
	}
}

// IsRetryContext reads the mark of RetryContext.
func TestIsRetryContext(t *testing.T) {
	if overload.IsRetryContext(context.Background()) || !overload.IsRetryContext(overload.RetryContext(context.Background())) {
		t.Fatal("IsRetryContext does not read RetryContext's mark")
	}
}

// Every WithStateListener is called, in order.
func TestEveryStateListenerIsCalled(t *testing.T) {
	var calls []string
	g := mustGuard(t, overload.WithClock(newFakeClock()),
		overload.WithStateListener(func(overload.StateChange) { calls = append(calls, "first") }),
		overload.WithStateListener(nil),
		overload.WithStateListener(func(overload.StateChange) { calls = append(calls, "second") }),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 1, MinRequests: 1}))
	tk, _ := g.Acquire(context.Background())
	tk.Done(overload.Outcome{Status: http.StatusInternalServerError})
	if !slices.Equal(calls, []string{"first", "second"}) {
		t.Fatalf("listeners called %v, want [first second]", calls)
	}
}

// Throttling weighs the application's requests: retries (and hedges) are
// neither rejected by it nor counted in its window, so that a service
// refusing a request and its retries is not counted as refusing it three
// times.
func TestRetriesAreNeitherThrottledNorCounted(t *testing.T) {
	g := mustGuard(t, overload.WithClock(newFakeClock()))
	for range 20 {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			continue // throttled: counted as a request
		}
		tk.Done(overload.Outcome{Status: http.StatusServiceUnavailable})
	}
	st := g.Status()
	if st.RejectProbability < 0.5 {
		t.Fatalf("reject probability %.2f after 20 refusals, want throttling on", st.RejectProbability)
	}
	for range 50 {
		tk, err := g.AcquireRetry(context.Background())
		if err != nil {
			t.Fatalf("a retry was refused while nothing else is in flight: %v", err)
		}
		tk.Done(overload.Outcome{Status: http.StatusServiceUnavailable})
	}
	if after := g.Status(); after.Requests != st.Requests || after.Accepts != st.Accepts {
		t.Fatalf("retries counted by throttling: requests %d -> %d, accepts %d -> %d", st.Requests, after.Requests, st.Accepts, after.Accepts)
	}
}
