package probe

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/smartroute/smartroute/internal/testbackend"
)

func TestRiseFallRestart(t *testing.T) {
	b := testbackend.MustHTTP(t)
	addr := b.Addr()
	p := newProber(t, TCP{}, fast(WithRise(2), WithFall(3))...)
	rec := record(p)
	p.SetAddrs([]string{addr})

	i, evs := rec.waitChange(t, addr, Healthy, 0)
	if i != 1 || evs[0].Health != Unknown || evs[0].Successes != 1 || evs[1].Successes != 2 {
		t.Fatalf("healthy at event %d (%+v), want the 2nd success after one Unknown", i, evs[:i+1])
	}

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	j, evs := rec.waitChange(t, addr, Unhealthy, i+1)
	if evs[j].Failures != 3 || evs[j].LastErr == nil {
		t.Fatalf("unhealthy after %d failures (err %v), want 3", evs[j].Failures, evs[j].LastErr)
	}
	for _, ev := range evs[j-2 : j] {
		if ev.Health != Healthy || ev.LastErr == nil || ev.HealthChanged {
			t.Fatalf("failure before the fall threshold: %+v, want still Healthy", ev)
		}
	}
	if st, _ := p.Status(addr); st.Health != Unhealthy {
		t.Fatalf("Status = %s", st.Health)
	}

	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	k, evs := rec.waitChange(t, addr, Healthy, j+1)
	if evs[k].Successes != 2 || evs[k-1].Health != Unhealthy || evs[k-1].LastErr != nil {
		t.Fatalf("back to healthy after %d successes (previous %+v), want 2", evs[k].Successes, evs[k-1])
	}
}

func TestSmoothedRTTRanksSlowerAndFlips(t *testing.T) {
	// The slow backend is 100 ms slower: each HTTP check makes a new
	// connection, and on a loaded 2-core machine with the race detector
	// that alone has added over 20 ms to a 5 ms answer.
	const quick, slow = 5 * time.Millisecond, 105 * time.Millisecond
	fastB := testbackend.MustHTTP(t, testbackend.WithLatency(quick))
	slowB := testbackend.MustHTTP(t, testbackend.WithLatency(slow))
	a, s := fastB.Addr(), slowB.Addr()
	p := newProber(t, HTTP{}, fast(WithDecay(100*time.Millisecond))...)
	p.SetAddrs([]string{a, s})

	stA, stS := waitChecks(t, p, a, 8), waitChecks(t, p, s, 8)
	stA, _ = p.Status(a)
	if stS.RTT-stA.RTT < 10*time.Millisecond {
		t.Fatalf("smoothed RTT: %v backend %v, %v backend %v; want the first >10ms slower", slow, stS.RTT, quick, stA.RTT)
	}
	if stS.LastRTT < slow {
		t.Fatalf("LastRTT of the %v backend = %v", slow, stS.LastRTT)
	}

	fastB.SetLatency(slow)
	slowB.SetLatency(quick)
	stA = waitChecks(t, p, a, stA.Checks+15)
	stS = waitChecks(t, p, s, stS.Checks+15)
	stA, _ = p.Status(a)
	if stA.RTT-stS.RTT < 10*time.Millisecond {
		t.Fatalf("after swapping: %s %v, %s %v; want the order flipped", a, stA.RTT, s, stS.RTT)
	}
}

func TestBlackholeFailsAfterTimeoutWithoutHoldingOthers(t *testing.T) {
	hole := testbackend.MustBlackhole(t)
	good := testbackend.MustHTTP(t)
	// The good backend's checks share the timeout: 500 ms, so that on a
	// loaded machine, where a check of a live backend on a new connection
	// can take over 100 ms, they do not time out too.
	const timeout = 500 * time.Millisecond
	p := newProber(t, HTTP{}, fast(WithTimeout(timeout), WithFall(2))...)
	rec := record(p)
	start := time.Now()
	p.SetAddrs([]string{hole.Addr(), good.Addr()})

	i, evs := rec.waitChange(t, hole.Addr(), Unhealthy, 0)
	took := time.Since(start)
	if !errors.Is(evs[i].LastErr, context.DeadlineExceeded) {
		t.Fatalf("blackhole error = %v, want a deadline exceeded", evs[i].LastErr)
	}
	if took < 2*timeout {
		t.Fatalf("unhealthy after %v, before two timeouts of %v", took, timeout)
	}
	if hole.Accepted() == 0 {
		t.Fatal("the blackhole never saw a connection")
	}
	st, _ := p.Status(good.Addr())
	if st.Health != Healthy || st.Checks < 5 {
		t.Fatalf("while the blackhole took %v the good backend had %d checks (%s); want >= 5, healthy", took, st.Checks, st.Health)
	}
}

func TestProxyFaultsTurnHealthAndBack(t *testing.T) {
	b := testbackend.MustHTTP(t)
	px := testbackend.MustProxy(t, b.Addr())
	p := newProber(t, HTTP{}, fast(WithTimeout(100*time.Millisecond), WithFall(2))...)
	rec := record(p)
	p.SetAddrs([]string{px.Addr()})
	i, _ := rec.waitChange(t, px.Addr(), Healthy, 0)
	if err := px.Blackhole(); err != nil {
		t.Fatal(err)
	}
	j, _ := rec.waitChange(t, px.Addr(), Unhealthy, i+1)
	px.RemoveToxics()
	rec.waitChange(t, px.Addr(), Healthy, j+1)
}

func TestFailingAnswersAreFailures(t *testing.T) {
	h := testbackend.MustHTTP(t, testbackend.WithStatus(503))
	g := testbackend.MustGRPC(t)
	g.SetServing("", false)
	ph := newProber(t, HTTP{}, fast(WithFall(2))...)
	pg := newProber(t, GRPCHealth{}, fast(WithFall(2))...)
	rh, rg := record(ph), record(pg)
	ph.SetAddrs([]string{h.Addr()})
	pg.SetAddrs([]string{g.Addr()})

	i, evs := rh.waitChange(t, h.Addr(), Unhealthy, 0)
	if !errors.Is(evs[i].LastErr, ErrUnexpectedStatus) {
		t.Fatalf("HTTP 503: %v, want ErrUnexpectedStatus", evs[i].LastErr)
	}
	j, evs := rg.waitChange(t, g.Addr(), Unhealthy, 0)
	if !errors.Is(evs[j].LastErr, ErrNotServing) {
		t.Fatalf("NOT_SERVING: %v, want ErrNotServing", evs[j].LastErr)
	}

	h.SetStatus(0)
	g.SetServing("", true)
	rh.waitChange(t, h.Addr(), Healthy, i+1)
	rg.waitChange(t, g.Addr(), Healthy, j+1)
}

func TestSetAddrsAddsAndRemovesWithoutDisturbing(t *testing.T) {
	a := testbackend.MustHTTP(t)
	b := testbackend.MustHTTP(t)
	c := testbackend.MustHTTP(t)
	p := newProber(t, TCP{}, fast()...)
	rec := record(p)
	p.SetAddrs([]string{a.Addr(), b.Addr(), a.Addr()}) // duplicates are ignored
	rec.waitChange(t, a.Addr(), Healthy, 0)
	rec.waitChange(t, b.Addr(), Healthy, 0)

	before, _ := p.Status(a.Addr())
	p.SetAddrs([]string{a.Addr(), c.Addr()})
	bEvents := len(rec.of(b.Addr()))
	if _, ok := p.Status(b.Addr()); ok {
		t.Fatal("removed address still has a status")
	}
	rec.waitChange(t, c.Addr(), Healthy, 0)
	after := waitChecks(t, p, a.Addr(), before.Checks+3)
	if after.Health != Healthy || after.Successes < before.Successes {
		t.Fatalf("kept address reset: before %+v, after %+v", before, after)
	}
	for _, ev := range rec.of(a.Addr()) {
		if ev.HealthChanged && ev.Health != Healthy {
			t.Fatalf("kept address changed health: %+v", ev)
		}
	}
	// A check of b that completed just before SetAddrs may still be
	// delivered; nothing after that.
	if n := len(rec.of(b.Addr())); n > bEvents+1 {
		t.Fatalf("removed address got %d more events", n-bEvents)
	}
	if got := p.Statuses(); len(got) != 2 || got[0].Addr > got[1].Addr {
		t.Fatalf("Statuses = %+v, want a and c sorted", got)
	}

	// Added back, b starts afresh.
	n := len(rec.of(b.Addr()))
	p.SetAddrs([]string{a.Addr(), b.Addr(), c.Addr()})
	var evs []Event
	waitFor(t, readyTimeout, "a check of the re-added address", func() bool {
		evs = rec.of(b.Addr())
		return len(evs) > n
	})
	if ev := evs[n]; ev.Checks != 1 || ev.Health != Unknown || ev.Successes != 1 {
		t.Fatalf("first check of the re-added address: %+v, want a fresh start", ev)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	var addrs []string
	for range 8 {
		addrs = append(addrs, testbackend.MustHTTP(t, testbackend.WithLatency(10*time.Millisecond)).Addr())
	}
	var running, peak atomic.Int64
	checker := CheckerFunc(func(ctx context.Context, addr string) (time.Duration, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		return HTTP{}.Check(ctx, addr)
	})
	p := newProber(t, checker, fast(WithConcurrency(3))...)
	p.SetAddrs(addrs)
	for _, a := range addrs {
		waitChecks(t, p, a, 3)
	}
	if got := peak.Load(); got > 3 || got < 2 {
		t.Fatalf("peak concurrent checks = %d, want 2..3 (bound 3)", got)
	}
}

func TestLogsHealthChanges(t *testing.T) {
	b := testbackend.MustHTTP(t)
	var buf syncBuffer
	p := newProber(t, TCP{}, fast(WithRise(1), WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))...)
	rec := record(p)
	p.SetAddrs([]string{b.Addr()})
	rec.waitChange(t, b.Addr(), Healthy, 0)
	if s := buf.String(); !strings.Contains(s, "health changed") || !strings.Contains(s, "to=healthy") || !strings.Contains(s, b.Addr()) {
		t.Fatalf("log = %q", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSubscriberNeverOverlapsForOneAddress(t *testing.T) {
	b := testbackend.MustHTTP(t)
	addr := b.Addr()
	p := newProber(t, TCP{}, fast()...)
	gate := make(chan struct{})
	var inside, overlaps, calls atomic.Int64
	var mu sync.Mutex
	var order []int64 // Checks of each delivered event
	unsubscribe := p.Subscribe(func(ev Event) {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		defer inside.Add(-1)
		mu.Lock()
		order = append(order, ev.Checks)
		mu.Unlock()
		if calls.Add(1) == 1 {
			<-gate // hold the first callback
		}
	})
	p.SetAddrs([]string{addr})
	waitFor(t, readyTimeout, "the first callback", func() bool { return inside.Load() == 1 })
	// Remove and re-add while the old loop is still in its callback: the
	// new loop must not deliver before the old one returned.
	p.SetAddrs(nil)
	p.SetAddrs([]string{addr})
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) && overlaps.Load() == 0 {
		time.Sleep(5 * time.Millisecond) // bounded look for a wrong overlap
	}
	close(gate)
	waitFor(t, readyTimeout, "callbacks of the new loop", func() bool { return calls.Load() >= 3 })
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("subscriber ran concurrently for one address %d times", n)
	}
	mu.Lock()
	if order[0] != 1 || order[1] != 1 || order[2] != 2 {
		t.Fatalf("checks of delivered events = %v, want the old loop's 1st, then the new loop's 1st, 2nd", order)
	}
	mu.Unlock()

	unsubscribe()
	unsubscribe() // idempotent
	// A call under way may finish; after the next completed check, none.
	st, _ := p.Status(addr)
	waitChecks(t, p, addr, st.Checks+2)
	n := calls.Load()
	waitChecks(t, p, addr, st.Checks+5)
	if calls.Load() != n {
		t.Fatal("subscriber called after unsubscribe")
	}
}

func TestCheckNow(t *testing.T) {
	b := testbackend.MustHTTP(t)
	p := newProber(t, TCP{}, WithInterval(time.Hour))
	p.SetAddrs([]string{b.Addr()})
	waitChecks(t, p, b.Addr(), 1) // the first check runs right away
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.CheckNow(ctx, b.Addr())
	if err != nil || st.Checks != 2 || st.Health != Healthy {
		t.Fatalf("CheckNow = %+v, %v; want the 2nd check, healthy", st, err)
	}
	if _, err := p.CheckNow(ctx, "127.0.0.1:1"); !errors.Is(err, ErrUnknownAddr) {
		t.Fatalf("CheckNow(unknown) = %v", err)
	}
	p.Close()
	if _, err := p.CheckNow(ctx, b.Addr()); !errors.Is(err, ErrClosed) {
		t.Fatalf("CheckNow after Close = %v", err)
	}
}

func TestCloseStopsEveryLoop(t *testing.T) {
	hole := testbackend.MustBlackhole(t)
	b := testbackend.MustHTTP(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	p := New(HTTP{}, fast(WithTimeout(10*time.Second))...)
	var calls atomic.Int64
	p.Subscribe(func(Event) { calls.Add(1) })
	p.SetAddrs([]string{hole.Addr(), b.Addr()})
	waitFor(t, readyTimeout, "a check of the backend and a connection to the blackhole", func() bool {
		return calls.Load() > 0 && hole.Accepted() > 0
	})
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 { // concurrent Close calls both return once everything stopped
		wg.Go(func() { _ = p.Close() })
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v: the blackholed check was not cancelled", took)
	}
	n := calls.Load()
	p.SetAddrs([]string{b.Addr()}) // after Close: no effect
	if _, ok := p.Status(b.Addr()); ok || len(p.Statuses()) != 0 {
		t.Fatal("statuses kept or added after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != n {
		t.Fatal("events after Close")
	}
}

func TestSmooth(t *testing.T) {
	const decay = 10 * time.Second
	if got := smooth(100*time.Millisecond, 200*time.Millisecond, 0, decay); got != 100*time.Millisecond {
		t.Fatalf("a sample at dt=0 moved the estimate to %v", got)
	}
	// After one decay window the old estimate keeps 1/e of its weight.
	got := smooth(100*time.Millisecond, 200*time.Millisecond, decay, decay)
	if want := 200*time.Millisecond - time.Duration(float64(100*time.Millisecond)*math.Exp(-1)); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Fatalf("smooth after one window = %v, want %v", got, want)
	}
	if got := smooth(100*time.Millisecond, 200*time.Millisecond, time.Hour, decay); got < 199*time.Millisecond {
		t.Fatalf("after a long gap the estimate is %v, want the new sample", got)
	}
}

func TestJitterAndOptionDefaults(t *testing.T) {
	p := New(TCP{}, WithInterval(100*time.Millisecond), WithJitter(0.5), WithRise(0), WithFall(-1), WithTimeout(0), WithConcurrency(0))
	defer p.Close()
	for range 1000 {
		if w := p.wait(); w < 50*time.Millisecond || w > 150*time.Millisecond {
			t.Fatalf("wait %v outside 100ms ± 50%%", w)
		}
	}
	o := p.opts
	if o.rise != DefaultRise || o.fall != DefaultFall || o.timeout != DefaultTimeout || o.concurrency != DefaultConcurrency || o.decay != DefaultDecay {
		t.Fatalf("invalid values not ignored: %+v", o)
	}
	d := New(TCP{}).opts
	if d.interval != 5*time.Second || d.timeout != time.Second || d.rise != 2 || d.fall != 3 || d.jitter != 0.1 {
		t.Fatalf("defaults %+v, want nginx's 5s/1s/2/3", d)
	}
}

func TestHealthString(t *testing.T) {
	for h, want := range map[Health]string{Unknown: "unknown", Healthy: "healthy", Unhealthy: "unhealthy", 7: "Health(7)"} {
		if h.String() != want {
			t.Errorf("%d.String() = %q, want %q", int32(h), h.String(), want)
		}
	}
}
