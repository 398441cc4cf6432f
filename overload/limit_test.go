package overload_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/overload"
)

func TestConcurrencyLimitHoldsExactlyUnderConcurrentLoad(t *testing.T) {
	const limit, workers, iterations = 7, 16, 3000
	reg := prometheus.NewRegistry()
	g := mustGuard(t, overload.WithoutThrottling(), overload.WithRegisterer(reg),
		overload.WithLimits(overload.Limits{MaxRequests: limit}))
	var inFlight, peak, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range iterations {
				tk, err := g.Acquire(context.Background())
				if err != nil {
					if !errors.Is(err, overload.ErrConcurrencyLimit) {
						t.Errorf("refusal %v; want ErrConcurrencyLimit", err)
						return
					}
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				// Hold the slot across a few reschedulings, so that
				// the others find the limit reached.
				for range 3 {
					runtime.Gosched()
				}
				inFlight.Add(-1)
				tk.Done(overload.Outcome{})
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("%d requests in flight at once; the limit is %d", p, limit)
	}
	if refused.Load() == 0 {
		t.Fatalf("no request refused (peak %d in flight): the load never reached the limit, nothing was tested", peak.Load())
	}
	if admitted.Load()+refused.Load() != workers*iterations {
		t.Fatalf("admitted %d + refused %d != %d", admitted.Load(), refused.Load(), workers*iterations)
	}
	if v := metricValue(t, reg, "smartroute_overload_rejections_total", map[string]string{"reason": "concurrency_limit", "scope": "service"}); v != float64(refused.Load()) {
		t.Fatalf("rejections metric %v; want %d", v, refused.Load())
	}
	if n := g.Status().InFlight; n != 0 {
		t.Fatalf("in flight after all Done: %d; want 0", n)
	}
	t.Logf("%d goroutines × %d requests, limit %d: peak %d in flight, %d admitted, %d refused", workers, iterations, limit, peak.Load(), admitted.Load(), refused.Load())
}

func TestConcurrencyLimitAdmitsExactlyAsManyAsFreed(t *testing.T) {
	const limit = 5
	g := mustGuard(t, overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRequests: limit}))
	var held []overload.Ticket
	for range limit {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
	}
	_, err := g.Acquire(context.Background())
	if !errors.Is(err, overload.ErrConcurrencyLimit) || !strings.Contains(err.Error(), "5 requests in flight") {
		t.Fatalf("request over the limit: %v; want ErrConcurrencyLimit naming the limit", err)
	}
	held[0].Done(overload.Outcome{})
	held[1].Done(overload.Outcome{})
	// Twenty racing requests for two free slots: exactly two get one.
	var got atomic.Int64
	var wg sync.WaitGroup
	tickets := make(chan overload.Ticket, 20)
	for range 20 {
		wg.Go(func() {
			if tk, err := g.Acquire(context.Background()); err == nil {
				got.Add(1)
				tickets <- tk
			}
		})
	}
	wg.Wait()
	close(tickets)
	if got.Load() != 2 {
		t.Fatalf("%d of 20 racing requests admitted for 2 free slots", got.Load())
	}
	for tk := range tickets {
		tk.Done(overload.Outcome{})
	}
	for _, tk := range held[2:] {
		tk.Done(overload.Outcome{})
	}
}

func TestPendingRequestsWaitInOrderAndGiveUpWithTheirContext(t *testing.T) {
	g := mustGuard(t, overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRequests: 1, MaxPending: 2}))
	first, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Two wait; the queue is then full.
	order := make(chan int, 2)
	var wg sync.WaitGroup
	waiting := func(i int) {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Errorf("waiter %d: %v", i, err)
			return
		}
		order <- i
		tk.Done(overload.Outcome{})
	}
	wg.Go(func() { waiting(1) })
	waitFor(t, "the first waiter queued", func() bool { return g.Status().Pending == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := g.Acquire(ctx)
		gaveUp <- err
	}()
	waitFor(t, "the second waiter queued", func() bool { return g.Status().Pending == 2 })
	// A third finds the queue full.
	if _, err := g.Acquire(context.Background()); !errors.Is(err, overload.ErrConcurrencyLimit) || !strings.Contains(err.Error(), "1 requests in flight and 2 waiting") {
		t.Fatalf("request with the queue full: %v; want ErrConcurrencyLimit naming both bounds", err)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter whose context ended: %v; want context.Canceled", err)
	}
	wg.Go(func() { waiting(2) })
	waitFor(t, "the canceled waiter replaced", func() bool { return g.Status().Pending == 2 })
	first.Done(overload.Outcome{})
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("waiters admitted in order %v; want [1 2]", got)
	}
	if n := g.Status().InFlight; n != 0 {
		t.Fatalf("in flight at the end: %d; want 0", n)
	}
}

func TestRetriesInFlightAreLimited(t *testing.T) {
	g := mustGuard(t, overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRetries: 2}))
	a, err := g.AcquireRetry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.AcquireRetry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.AcquireRetry(context.Background()); !errors.Is(err, overload.ErrConcurrencyLimit) || !strings.Contains(err.Error(), "2 retries in flight") {
		t.Fatalf("third retry: %v; want ErrConcurrencyLimit for retries", err)
	}
	// First attempts are not retries.
	c, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatalf("first attempt while retries are at their limit: %v", err)
	}
	a.Done(overload.Outcome{})
	if st := g.Status(); st.RetriesInFlight != 1 || st.InFlight != 2 {
		t.Fatalf("status %+v; want 1 retry and 2 requests in flight", st)
	}
	if _, err := g.AcquireRetry(context.Background()); err != nil {
		t.Fatalf("retry after one ended: %v", err)
	}
	_ = b
	_ = c
}

func TestLimitsAreValidated(t *testing.T) {
	_, err := overload.New("api", overload.WithLimits(overload.Limits{MaxRequests: -5}))
	if err == nil || !strings.Contains(err.Error(), "maxRequests -5 must be positive, or NoLimit") {
		t.Fatalf("MaxRequests -5: %v", err)
	}
	g := mustGuard(t, overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRequests: overload.NoLimit, MaxRetries: overload.NoLimit}))
	for range 5000 {
		if _, err := g.AcquireRetry(context.Background()); err != nil {
			t.Fatalf("NoLimit refused: %v", err)
		}
	}
	// Any number may wait with MaxPending NoLimit.
	g = mustGuard(t, overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRequests: 1, MaxPending: overload.NoLimit}))
	first, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const waiters = 50
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			tk, err := g.Acquire(context.Background())
			if err != nil {
				t.Errorf("waiter: %v", err)
				return
			}
			tk.Done(overload.Outcome{})
		})
	}
	waitFor(t, "every waiter queued", func() bool { return g.Status().Pending == waiters })
	first.Done(overload.Outcome{})
	wg.Wait()
}

// waitFor polls cond until it holds, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
