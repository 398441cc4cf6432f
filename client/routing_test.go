package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/probe"
)

// With five backends, one much slower, least_latency sends almost nothing
// to the slow one; when the latencies swap, traffic follows.
func TestLeastLatencyAvoidsTheSlowBackendAndFollowsASwap(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	bs := backends(t, 5, 2*time.Millisecond)
	// The slow backend is 60 ms slower: on a loaded 2-core machine with the
	// race detector, the fast backends' own answers often take 20 ms, so a
	// smaller gap would measure the machine, not the policy (the routing
	// benchmarks measure a 20 ms gap on a quiet one).
	const slow = 62 * time.Millisecond
	bs[4].SetLatency(slow)
	c := staticClient(t, endpointsOf(addrs(bs)...), fastProbe(), client.WithLatencyDecay(2*time.Second))
	waitHealthy(t, c, bs...)

	tl := load(ctx, c, 400, 4, nil)
	if tl.failed > 0 {
		t.Fatalf("failed requests: %v", tl)
	}
	if s := tl.share("b4"); s > 0.05 {
		t.Errorf("slow backend took %.1f%% of requests, want under 5%% (round robin: 20%%): %v", 100*s, tl)
	}
	t.Logf("before the swap: %v", tl)

	// Swap: b0 becomes the slow one.
	bs[4].SetLatency(2 * time.Millisecond)
	bs[0].SetLatency(slow)
	start := time.Now()
	var last *tally
	for {
		last = load(ctx, c, 100, 4, nil)
		if last.failed > 0 {
			t.Fatalf("failed requests: %v", last)
		}
		if last.share("b0") <= 0.05 && last.share("b4") >= 0.05 {
			break
		}
		if time.Since(start) > readyTimeout || ctx.Err() != nil {
			t.Fatalf("traffic did not follow the swap after %v: %v", time.Since(start), last)
		}
	}
	t.Logf("traffic followed the swap within %v: %v", time.Since(start).Round(time.Millisecond), last)
}

// A backend killed in the middle of the load costs no failed GET: the
// requests that were on it and those that pick it before the prober notices
// are retried on another backend.
func TestKilledBackendCostsNoFailedGET(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, 3*time.Millisecond)
	c := staticClient(t, endpointsOf(addrs(bs)...), fastProbe(), client.WithPolicy(client.RoundRobin))
	waitHealthy(t, c, bs...)

	tl := load(ctx, c, 600, 6, func() {
		if err := bs[1].Stop(); err != nil {
			t.Error(err)
		}
	})
	if tl.failed > 0 {
		t.Fatalf("failed GETs after a backend was killed: %v", tl)
	}
	if tl.by["b1"] == 0 {
		t.Fatalf("the killed backend took no request before it died: %v", tl)
	}
	waitFor(t, readyTimeout, "the prober to mark the killed backend unhealthy", func() bool {
		return info(c, bs[1].Addr()).Health == probe.Unhealthy
	})
	before := bs[1].Requests()
	if err := bs[1].Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, readyTimeout, "the restarted backend to take traffic again", func() bool {
		_, err := get(ctx, c, "http")
		return err == nil && bs[1].Requests() > before
	})
	t.Logf("%v", tl)
}

// A blackholed backend (it accepts connections and never answers) costs
// one per-try timeout, then is avoided.
func TestBlackholedBackendIsAvoidedAfterOneTimeout(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, time.Millisecond)
	proxies := make([]string, len(bs))
	var hole *testbackend.Proxy
	for i, b := range bs {
		p := testbackend.MustProxy(t, b.Addr())
		proxies[i] = p.Addr()
		if i == 0 {
			hole = p
		}
	}
	const perTry = 300 * time.Millisecond
	c := staticClient(t, endpointsOf(proxies...), fastProbe(),
		client.WithRetries(client.RetryPolicy{PerTryTimeout: perTry}))
	if tl := load(ctx, c, 60, 1, nil); tl.failed > 0 {
		t.Fatalf("warm-up: %v", tl)
	}
	if err := hole.Blackhole(); err != nil {
		t.Fatal(err)
	}
	// A request that waited out the per-try timeout is one whose attempt
	// on the blackhole failed: counted there, not by the clock, which on a
	// loaded machine may stop any request for longer than perTry.
	failedBefore := info(c, hole.Addr()).Failures
	slow := 0
	tl := newTally()
	for range 100 {
		start := time.Now()
		tl.add(get(ctx, c, "http"))
		if time.Since(start) >= perTry {
			slow++
		}
	}
	if tl.failed > 0 {
		t.Fatalf("failed GETs with a blackholed backend: %v", tl)
	}
	waited := info(c, hole.Addr()).Failures - failedBefore
	if waited > 2 {
		t.Errorf("%d requests waited out the per-try timeout on the blackhole; want it avoided after one or two", waited)
	}
	if n := tl.by["b0"]; n > 0 {
		t.Errorf("the blackholed backend answered %d requests", n)
	}
	t.Logf("%d of 100 requests waited out the per-try timeout on the blackhole (%d took %v or more): %v", waited, slow, perTry, tl)
}

// An endpoint answering 502 is ejected after consecutive failures, its
// requests retried elsewhere, and it returns after its ejection time.
func TestEjectedBackendReturnsAfterItsEjectionTime(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, time.Millisecond)
	bs[2].SetStatus(http.StatusBadGateway)
	// Long enough that the 50 requests below run within the ejection even
	// on a loaded machine (a few milliseconds each when all is well).
	const ejection = 3 * time.Second
	c := staticClient(t, endpointsOf(addrs(bs)...), fastProbe(),
		client.WithPolicy(client.RoundRobin),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 3, BaseEjectionTime: ejection, MaxEjectedShare: 0.5}))

	tl := load(ctx, c, 30, 1, nil)
	if tl.failed > 0 {
		t.Fatalf("502s were not retried elsewhere: %v", tl)
	}
	ep := info(c, bs[2].Addr())
	if !ep.Ejected {
		t.Fatalf("backend answering 502 not ejected: %+v", ep)
	}
	t.Logf("ejected: %s", ep.Why)
	served := bs[2].Requests()
	if tl := load(ctx, c, 20, 1, nil); tl.failed > 0 || bs[2].Requests() != served {
		t.Fatalf("the ejected backend still got requests (%d -> %d): %v", served, bs[2].Requests(), tl)
	}

	bs[2].SetStatus(0)
	waitFor(t, ejection+readyTimeout, "the ejection to end", func() bool { return !info(c, bs[2].Addr()).Ejected })
	if tl := load(ctx, c, 30, 1, nil); tl.by["b2"] == 0 {
		t.Fatalf("the backend did not return after its ejection: %v", tl)
	}
}

// unhealthyChecker is a health check that fails for the addresses it
// holds: the probe's view, unlike the backends' real state.
type unhealthyChecker map[string]bool

func (u unhealthyChecker) Check(ctx context.Context, addr string) (time.Duration, error) {
	if u[addr] {
		return 0, errors.New("health check says no")
	}
	return probe.TCP{}.Check(ctx, addr)
}

// With most endpoints failing their health checks, panic mode picks among
// all of them rather than piling everything onto the survivor.
func TestPanicModeSpreadsOverAllEndpoints(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 4, time.Millisecond)
	bad := unhealthyChecker{bs[1].Addr(): true, bs[2].Addr(): true, bs[3].Addr(): true}
	probeOpts := []probe.Option{probe.WithInterval(25 * time.Millisecond), probe.WithRise(1), probe.WithFall(1)}

	for _, tc := range []struct {
		name      string
		threshold float64
		wantPanic bool
	}{{"panic", client.DefaultPanicThreshold, true}, {"off", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := staticClient(t, endpointsOf(addrs(bs)...), client.WithProbe(bad, probeOpts...),
				client.WithPolicy(client.RoundRobin), client.WithPanicThreshold(tc.threshold))
			waitFor(t, readyTimeout, "health checks to decide", func() bool {
				return info(c, bs[3].Addr()).Health == probe.Unhealthy && info(c, bs[0].Addr()).Health == probe.Healthy
			})
			tl := load(ctx, c, 80, 2, nil)
			if tl.failed > 0 {
				t.Fatalf("%v", tl)
			}
			if got := tl.by["b3"] > 0; got != tc.wantPanic {
				t.Errorf("unhealthy endpoint picked: %v, want %v: %v", got, tc.wantPanic, tl)
			}
		})
	}
}

// Zone preference: requests stay in the local zone, spill over when it is
// unhealthy, and come back. round_robin uses the local zone only while it
// is healthy; least_latency weighs remote endpoints down by the cross-zone
// penalty, so a few requests may still explore them.
func TestZoneSpillsOverWhenTheLocalZoneIsDown(t *testing.T) {
	for _, tc := range []struct {
		policy   client.Policy
		minLocal float64
	}{{client.RoundRobin, 1}, {client.LeastLatency, 0.9}} {
		t.Run(string(tc.policy), func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			bs := backends(t, 4, time.Millisecond)
			eps := endpointsOf(addrs(bs)...)
			eps[0].Zone, eps[1].Zone, eps[2].Zone, eps[3].Zone = "a", "a", "b", "b"
			c := staticClient(t, eps, fastProbe(), client.WithPolicy(tc.policy), client.WithZone(client.Zone{Local: "a"}))
			waitHealthy(t, c, bs...)
			local := func(tl *tally) float64 { return float64(tl.by["b0"]+tl.by["b1"]) / float64(tl.total) }

			tl := load(ctx, c, 100, 2, nil)
			if tl.failed > 0 || local(tl) < tc.minLocal {
				t.Fatalf("healthy local zone: traffic left it: %v", tl)
			}
			for _, b := range bs[:2] {
				if err := b.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			tl = load(ctx, c, 60, 2, nil)
			if tl.failed > 0 || tl.by["b2"]+tl.by["b3"] != 60 {
				t.Fatalf("local zone down: want every request spilled to zone b without failure: %v", tl)
			}
			for _, b := range bs[:2] {
				if err := b.Restart(); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, readyTimeout, "zone a to be healthy again", func() bool {
				a, b := info(c, bs[0].Addr()), info(c, bs[1].Addr())
				return a.Health == probe.Healthy && b.Health == probe.Healthy && a.Eligible && b.Eligible
			})
			// Local endpoints come back measured as failing; they win the
			// traffic back as the estimates recover.
			waitFor(t, readyTimeout, "traffic to return to zone a", func() bool {
				tl := load(ctx, c, 40, 2, nil)
				return tl.failed == 0 && local(tl) >= tc.minLocal
			})
		})
	}
}

// A label selector routes to matching endpoints only; a canary takes its
// share of ordinary requests and every marked one; draining endpoints get
// nothing.
func TestLabelsCanaryAndDraining(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 4, time.Millisecond)
	eps := endpointsOf(addrs(bs)...)
	eps[0].Labels = map[string]string{"canary": "true"}
	eps[3].Draining = true

	t.Run("selector", func(t *testing.T) {
		c := staticClient(t, eps, fastProbe(), client.WithLabelSelector(map[string]string{"canary": "true"}))
		if tl := load(ctx, c, 30, 2, nil); tl.failed > 0 || tl.by["b0"] != 30 {
			t.Fatalf("want every request on the selected endpoint: %v", tl)
		}
	})
	t.Run("canary", func(t *testing.T) {
		c := staticClient(t, eps, fastProbe(), client.WithPolicy(client.RoundRobin),
			client.WithCanary(client.Canary{Labels: map[string]string{"canary": "true"}, Share: 0.2}))
		tl := load(ctx, c, 500, 4, nil)
		if tl.failed > 0 {
			t.Fatal(tl)
		}
		if s := tl.share("b0"); s < 0.12 || s > 0.28 {
			t.Errorf("canary share %.2f, want about 0.2: %v", s, tl)
		}
		if tl.by["b3"] > 0 {
			t.Errorf("draining endpoint took requests: %v", tl)
		}
		marked := newTally()
		mctx := client.CanaryContext(ctx)
		for range 20 {
			marked.add(get(mctx, c, "http"))
		}
		if marked.by["b0"] != 20 {
			t.Errorf("marked requests must all go to the canary: %v", marked)
		}
	})
	t.Run("all draining", func(t *testing.T) {
		all := endpointsOf(addrs(bs[:2])...)
		all[0].Draining, all[1].Draining = true, true
		c := staticClient(t, all, client.WithoutProbe())
		_, err := get(ctx, c, "http")
		if !errors.Is(err, client.ErrNoHealthyEndpoint) {
			t.Fatalf("err %v, want ErrNoHealthyEndpoint", err)
		}
		if want := `"api"`; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name the service", err)
		}
	})
}

// weighted_round_robin sends traffic in proportion to the weights.
func TestWeightedRoundRobinMatchesWeights(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, 0)
	eps := endpointsOf(addrs(bs)...)
	eps[0].Weight, eps[1].Weight, eps[2].Weight = 1, 2, 3
	c := staticClient(t, eps, fastProbe(), client.WithPolicy(client.WeightedRoundRobin))
	tl := load(ctx, c, 600, 1, nil)
	if tl.failed > 0 {
		t.Fatal(tl)
	}
	for name, want := range map[string]int{"b0": 100, "b1": 200, "b2": 300} {
		if got := tl.by[name]; got < want-3 || got > want+3 {
			t.Errorf("%s got %d requests, want %d: %v", name, got, want, tl)
		}
	}
}

// When the retry budget is spent, requests are no longer retried: a
// struggling service does not see its load multiplied.
func TestRetryBudgetStopsRetries(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, 0, testbackend.WithStatus(http.StatusServiceUnavailable))
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithOutlierDetection(client.OutlierDetection{Disabled: true}),
		client.WithRetries(client.RetryPolicy{MaxRetries: 2, Budget: client.RetryBudget{Ratio: 0.1, MinPerSecond: 1, TTL: 10 * time.Second}}))
	const n = 200
	tl := load(ctx, c, n, 1, nil)
	if tl.failed != n {
		t.Fatalf("every request should fail with 503: %v", tl)
	}
	var served int64
	for _, b := range bs {
		served += b.Requests()
	}
	// Budget: 10% of 200 requests plus 1/s × 10 s = 30 retries at most,
	// against 400 without a budget.
	if retries := served - n; retries > 30 || retries < 10 {
		t.Errorf("%d retries for %d requests, want within the budget of 30 (and some)", retries, n)
	} else {
		t.Logf("%d retries for %d failing requests", retries, n)
	}
}

// Hedging cuts the p99 of a heavy-tailed set: 5% of answers 100 times
// slower (200 ms: far above what a loaded machine adds to a 2 ms answer,
// so that the p99s compare the tail, not the machine).
func TestHedgingCutsTheTail(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	// slow counts the requests of 600 that met the tail (100 ms; the
	// others take 2): 5% of them without hedging; with it, only those
	// whose hedge met the tail too, 0.25%. (The p99 of 300, compared
	// before, is their third slowest, which the tail reaches one run in
	// 25 even with hedging.)
	slow := func(c *client.Client) int {
		for range 50 { // warm up: hedging needs recent latencies
			if _, err := get(ctx, c, "http"); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		for range 600 {
			start := time.Now()
			if _, err := get(ctx, c, "http"); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > 50*time.Millisecond {
				n++
			}
		}
		return n
	}
	bs := backends(t, 4, 2*time.Millisecond, testbackend.WithHeavyTail(0.05, 50))
	plain := slow(staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin)))
	hedged := slow(staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithHedging(client.Hedging{Percentile: 0.9})))
	t.Logf("requests over 50ms: %d of 600 without hedging, %d with", plain, hedged)
	if plain < 10 {
		t.Fatalf("only %d of 600 requests met the injected tail: the test shows nothing", plain)
	}
	if hedged*2 > plain {
		t.Errorf("hedging did not cut the slow requests: %d -> %d of 600", plain, hedged)
	}
}

// A request whose context ends returns at once with the context's error.
func TestRequestHonoursContextCancellation(t *testing.T) {
	bs := backends(t, 1, 5*time.Second)
	c := staticClient(t, endpointsOf(bs[0].Addr()), client.WithoutProbe())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := get(ctx, c, "http")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled request took %v", d)
	}
}

// Pick says where the next request would go and why, without sending it.
func TestPickExplainsTheChoice(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, time.Millisecond)
	// 200 ms: a slow backend whatever the load adds to the others' 1 ms
	// (their peak-EWMA estimates believe every spike).
	bs[2].SetLatency(200 * time.Millisecond)
	// An HTTP probe, so that the slow backend's estimate starts from its
	// probe RTT, 200 ms. With a TCP probe it would start from a connect
	// time like the others', and least_latency would not send it a request
	// until that guess had decayed below their measured latency: Pick
	// would then rightly choose it whenever a load spike had raised the
	// others' estimates above that guess.
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithProbe(probe.HTTP{},
		probe.WithInterval(25*time.Millisecond), probe.WithTimeout(time.Second), probe.WithRise(1), probe.WithFall(3)))
	waitHealthy(t, c, bs...)
	waitFor(t, readyTimeout, "the slow backend's estimate to show it slow", func() bool {
		return info(c, bs[2].Addr()).RTT >= 100*time.Millisecond
	})
	if tl := load(ctx, c, 60, 1, nil); tl.failed > 0 {
		t.Fatal(tl)
	}
	// Sent requests as the client counts them (the backends' counts
	// include the probe's checks).
	sent := func() (n uint64, inflight int64) {
		for _, e := range c.Endpoints() {
			n += e.Requests
			inflight += e.InFlight
		}
		return n, inflight
	}
	before, _ := sent()
	for range 20 {
		ch, err := c.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Addr == bs[2].Addr() {
			t.Fatalf("Pick chose the slow backend: %+v", ch)
		}
		if ch.Policy != client.LeastLatency || ch.Eligible != 3 || ch.Cost <= 0 || !strings.Contains(ch.Reason, "expected latency") {
			t.Fatalf("choice %+v", ch)
		}
	}
	if now, inflight := sent(); now != before || inflight != 0 {
		t.Fatalf("Pick sent %d requests (%d in flight)", now-before, inflight)
	}
}

// With hedging, an attempt that failed (503) and was kept while another
// ran is closed when the other wins: the endpoint's in-flight count comes
// back to zero.
func TestHedgingReleasesTheFailedAttemptWhenAnotherWins(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bad := testbackend.MustHTTP(t, testbackend.WithName("bad"), testbackend.WithStatus(http.StatusServiceUnavailable))
	good := testbackend.MustHTTP(t, testbackend.WithName("good"))
	c := staticClient(t, endpointsOf(bad.Addr(), good.Addr()), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithHedging(client.Hedging{Delay: time.Hour}), client.WithOutlierDetection(client.OutlierDetection{Disabled: true}))
	for range 20 {
		if _, err := get(ctx, c, "http"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, readyTimeout, "every endpoint's in-flight count to return to 0", func() bool {
		for _, e := range c.Endpoints() {
			if e.InFlight != 0 {
				return false
			}
		}
		return true
	})
}

// Requests after Close fail with ErrClosed, every time.
func TestRoundTripAfterCloseFails(t *testing.T) {
	bs := backends(t, 1, 0)
	c := staticClient(t, endpointsOf(bs[0].Addr()), client.WithoutProbe())
	c.Close()
	for range 100 {
		if _, err := get(context.Background(), c, "http"); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("err %v after Close, want ErrClosed", err)
		}
	}
}

// Close while hedged requests are in flight: they finish or fail cleanly,
// and Close waits for what it owns (the race detector and goleak watch).
func TestCloseDuringHedgedRequests(t *testing.T) {
	slow := testbackend.MustHTTP(t, testbackend.WithName("slow"), testbackend.WithLatency(100*time.Millisecond))
	fast := testbackend.MustHTTP(t, testbackend.WithName("fast"), testbackend.WithLatency(2*time.Millisecond))
	c := staticClient(t, endpointsOf(slow.Addr(), fast.Addr()), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithHedging(client.Hedging{Delay: time.Millisecond}))
	var done atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := get(context.Background(), c, "http"); err != nil && !errors.Is(err, client.ErrClosed) {
					t.Error(err)
				}
				done.Add(1)
			}
		}()
	}
	waitFor(t, readyTimeout, "hedged requests to complete", func() bool { return done.Load() >= 10 })
	c.Close()
	wg.Wait()
}
