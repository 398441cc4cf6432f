package overload_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/overload"
)

// call sends one request through g that ends after lat with o's error or
// status; it returns the guard's refusal, if any.
func call(g *overload.Guard, lat time.Duration, o overload.Outcome) error {
	tk, err := g.Acquire(context.Background())
	if err != nil {
		return err
	}
	o.Latency = lat
	tk.Done(o)
	return nil
}

var (
	ok      = overload.Outcome{}
	failed  = overload.Outcome{Status: 500}
	refused = overload.Outcome{Status: 503}
)

func TestSlowCallBreakerOpensHalfOpensAndCloses(t *testing.T) {
	clk := newFakeClock()
	ev := &events{}
	reg := prometheus.NewRegistry()
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithRegisterer(reg),
		overload.WithStateListener(ev.record),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: 800 * time.Millisecond}))
	state := func() overload.State { return g.Status().Breakers[0].State }

	// 5 fast and 4 slow calls: 9 calls, under MinRequests (10).
	for i := range 9 {
		lat := 10 * time.Millisecond
		if i >= 5 {
			lat = 900 * time.Millisecond
		}
		if err := call(g, lat, ok); err != nil {
			t.Fatalf("call %d refused while closed: %v", i, err)
		}
	}
	if state() != overload.Closed {
		t.Fatalf("state after 9 calls = %v; want closed (under MinRequests)", state())
	}
	// The 10th, slow: 5 of 10 slow reaches the 50% threshold.
	clk.Advance(time.Second)
	if err := call(g, 900*time.Millisecond, ok); err != nil {
		t.Fatal(err)
	}
	if state() != overload.Open {
		t.Fatalf("state after 5 of 10 calls slow = %v; want open", state())
	}
	if c := ev.last(); c.Value != 0.5 || c.At != clk.Now() {
		t.Fatalf("open event value %v at %v; want 0.5 at %v", c.Value, c.At, clk.Now())
	}

	// Open: every call fails fast, for the retry timeout.
	err := call(g, 0, ok)
	var rej *overload.RejectedError
	if !errors.Is(err, overload.ErrBreakerOpen) || !errors.As(err, &rej) {
		t.Fatalf("call while open: %v; want ErrBreakerOpen", err)
	}
	if rej.RetryAfter != overload.DefaultRetryTimeout || rej.Endpoint != "" || rej.Service != "api" {
		t.Fatalf("rejection %+v; want RetryAfter %v for service api", rej, overload.DefaultRetryTimeout)
	}
	if !strings.Contains(err.Error(), `breaker "slow_call_ratio" open`) || !strings.Contains(err.Error(), "slower than 800ms") {
		t.Fatalf("message %q does not say which breaker and why", err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC code %v; want Unavailable", status.Code(err))
	}
	clk.Advance(overload.DefaultRetryTimeout - time.Nanosecond)
	if err := call(g, 0, ok); !errors.Is(err, overload.ErrBreakerOpen) {
		t.Fatalf("call 1ns before the retry timeout: %v; want ErrBreakerOpen", err)
	}
	clk.Advance(time.Nanosecond)

	// Half-open: 3 probes, no more.
	var probes []overload.Ticket
	for i := range overload.DefaultProbes {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatalf("probe %d refused: %v", i, err)
		}
		probes = append(probes, tk)
	}
	if state() != overload.HalfOpen {
		t.Fatalf("state with probes out = %v; want half_open", state())
	}
	if err := call(g, 0, ok); !errors.Is(err, overload.ErrBreakerOpen) || !strings.Contains(err.Error(), "half-open") {
		t.Fatalf("fourth call while half-open: %v; want ErrBreakerOpen (half-open)", err)
	}
	// A probe whose caller gave up is given back: another call may probe.
	probes[1].Done(overload.Outcome{Err: context.Canceled})
	tk, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatalf("probe after one was given back: %v", err)
	}
	probes[1] = tk
	// Three fast successes close it.
	for i, p := range probes {
		p.Done(overload.Outcome{Latency: 20 * time.Millisecond})
		if want := overload.HalfOpen; i < 2 && state() != want {
			t.Fatalf("state after %d probes passed = %v; want %v", i+1, state(), want)
		}
	}
	if state() != overload.Closed {
		t.Fatalf("state after 3 probes passed = %v; want closed", state())
	}
	want := []string{"slow_call_ratio:closed>open", "slow_call_ratio:open>half_open", "slow_call_ratio:half_open>closed"}
	if got := ev.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions %v; want %v", got, want)
	}
	// Closing starts fresh statistics: one slow call does not reopen.
	if err := call(g, 900*time.Millisecond, ok); err != nil || state() != overload.Closed {
		t.Fatalf("after closing, a slow call: err %v, state %v; want closed", err, state())
	}

	if v := metricValue(t, reg, "smartroute_overload_breaker_state", map[string]string{"service": "api", "breaker": "slow_call_ratio"}); v != 0 {
		t.Fatalf("breaker_state gauge %v; want 0 (closed)", v)
	}
	if v := metricValue(t, reg, "smartroute_overload_breaker_transitions_total", map[string]string{"scope": "service", "from": "closed", "to": "open"}); v != 1 {
		t.Fatalf("closed→open transitions %v; want 1", v)
	}
	if v := metricValue(t, reg, "smartroute_overload_rejections_total", map[string]string{"scope": "service", "reason": "breaker_open"}); v != 3 {
		t.Fatalf("breaker_open rejections %v; want 3", v)
	}
}

// openBreaker trips g's only breaker with failing calls.
func openBreaker(t *testing.T, g *overload.Guard) {
	t.Helper()
	for range overload.DefaultMinRequests {
		if err := call(g, time.Millisecond, failed); err != nil {
			t.Fatal(err)
		}
	}
	if s := g.Status().Breakers[0].State; s != overload.Open {
		t.Fatalf("state after %d failures = %v; want open", overload.DefaultMinRequests, s)
	}
}

func TestBreakerProbeFailureOpensItAgain(t *testing.T) {
	clk := newFakeClock()
	ev := &events{}
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithStateListener(ev.record),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio, RetryTimeout: 3 * time.Second}))
	openBreaker(t, g)
	clk.Advance(3 * time.Second)
	first, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first.Done(ok)
	second.Done(failed) // one failed probe is enough
	if s := g.Status().Breakers[0]; s.State != overload.Open || !s.OpenUntil.Equal(clk.Now().Add(3*time.Second)) {
		t.Fatalf("after a failed probe: %+v; want open until %v", s, clk.Now().Add(3*time.Second))
	}
	want := []string{"error_ratio:closed>open", "error_ratio:open>half_open", "error_ratio:half_open>open"}
	if got := ev.transitions(); !slices.Equal(got, want) {
		t.Fatalf("transitions %v; want %v", got, want)
	}
}

func TestSlowProbeOpensASlowCallBreakerAgain(t *testing.T) {
	clk := newFakeClock()
	ev := &events{}
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithStateListener(ev.record),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: 800 * time.Millisecond}))
	for range 10 {
		_ = call(g, time.Second, ok)
	}
	clk.Advance(overload.DefaultRetryTimeout)
	if err := call(g, 1500*time.Millisecond, ok); err != nil {
		t.Fatal(err)
	}
	if c := ev.last(); c.To != overload.Open || c.From != overload.HalfOpen || c.Value != 1.5 {
		t.Fatalf("last change %+v; want half_open→open with value 1.5 (the probe's seconds)", c)
	}
}

func TestErrorBreakersCountFailuresNotOverloadRefusals(t *testing.T) {
	for _, c := range []struct {
		name     string
		rule     overload.BreakerRule
		outcomes []overload.Outcome
		want     overload.State
	}{
		{"ratio: half failed", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(5, failed, 5, ok), overload.Open},
		{"ratio: 4 of 10 failed", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(4, failed, 6, ok), overload.Closed},
		{"ratio: connection failures count", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(10, overload.Outcome{Err: errors.New("dial tcp: connection refused")}), overload.Open},
		{"ratio: 503 is busy, not broken", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(30, refused), overload.Closed},
		{"ratio: canceled calls say nothing", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(30, overload.Outcome{Err: context.Canceled}), overload.Closed},
		{"ratio: deadline exceeded counts", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(10, overload.Outcome{Err: context.DeadlineExceeded}), overload.Open},
		{"ratio: gRPC NotFound is the caller's", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(10, overload.Outcome{Err: status.Error(codes.NotFound, "no such user")}), overload.Closed},
		{"ratio: gRPC Internal counts", overload.BreakerRule{Strategy: overload.ErrorRatio},
			repeat(10, overload.Outcome{Err: status.Error(codes.Internal, "boom")}), overload.Open},
		{"count: 19 of 100 failed", overload.BreakerRule{Strategy: overload.ErrorCount},
			repeat(19, failed, 81, ok), overload.Closed},
		{"count: 20 of 100 failed", overload.BreakerRule{Strategy: overload.ErrorCount},
			repeat(80, ok, 20, failed), overload.Open},
		{"count: under MinRequests", overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 3, MinRequests: 5},
			repeat(4, failed), overload.Closed},
		{"count: threshold 3", overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 3, MinRequests: 5},
			repeat(2, ok, 3, failed), overload.Open},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := mustGuard(t, overload.WithClock(newFakeClock()), overload.WithoutThrottling(), overload.WithBreakers(c.rule))
			for _, o := range c.outcomes {
				if err := call(g, time.Millisecond, o); err != nil {
					t.Fatal(err)
				}
			}
			if got := g.Status().Breakers[0].State; got != c.want {
				t.Fatalf("state = %v; want %v", got, c.want)
			}
		})
	}
}

// repeat builds a list: n1 times o1, n2 times o2, …
func repeat(args ...any) []overload.Outcome {
	var out []overload.Outcome
	for i := 0; i < len(args); i += 2 {
		for range args[i].(int) {
			out = append(out, args[i+1].(overload.Outcome))
		}
	}
	return out
}

func TestBreakerStatWindowSlides(t *testing.T) {
	clk := newFakeClock()
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	for range 9 {
		_ = call(g, time.Millisecond, failed)
	}
	clk.Advance(overload.DefaultStatWindow)
	_ = call(g, time.Millisecond, failed)
	if s := g.Status().Breakers[0].State; s != overload.Closed {
		t.Fatalf("state = %v; want closed: the 9 old failures left the window", s)
	}
}

func TestCallsAdmittedBeforeOpeningDoNotCountAfterIt(t *testing.T) {
	clk := newFakeClock()
	ev := &events{}
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithStateListener(ev.record),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	late, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	openBreaker(t, g)
	clk.Advance(overload.DefaultRetryTimeout)
	probe, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	late.Done(failed) // from before the break: not a probe
	if got := g.Status().Breakers[0].State; got != overload.HalfOpen {
		t.Fatalf("state after an old call failed = %v; want half_open", got)
	}
	probe.Done(ok)
}

func TestProbeFromAnEarlierHalfOpenPeriodFreesNothingLater(t *testing.T) {
	clk := newFakeClock()
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	openBreaker(t, g)
	clk.Advance(overload.DefaultRetryTimeout)
	stale, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := call(g, time.Millisecond, failed); err != nil { // second probe fails: open again
		t.Fatal(err)
	}
	clk.Advance(overload.DefaultRetryTimeout)
	var held []overload.Ticket
	for range overload.DefaultProbes {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
	}
	stale.Done(overload.Outcome{Err: context.Canceled})
	if err := call(g, time.Millisecond, ok); !errors.Is(err, overload.ErrBreakerOpen) {
		t.Fatalf("a probe of the earlier period gave back a slot of this one: %v", err)
	}
	for _, tk := range held {
		tk.Done(ok)
	}
	if s := g.Status().Breakers[0].State; s != overload.Closed {
		t.Fatalf("state = %v; want closed", s)
	}
}

func TestARequestRefusedByOneBreakerGivesBackAnothersProbe(t *testing.T) {
	clk := newFakeClock()
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithBreakers(
		overload.BreakerRule{Name: "fast", Strategy: overload.ErrorRatio, RetryTimeout: time.Second},
		overload.BreakerRule{Name: "slow", Strategy: overload.ErrorCount, Threshold: 10, RetryTimeout: 10 * time.Second},
	))
	for range 10 {
		_ = call(g, time.Millisecond, failed)
	}
	clk.Advance(time.Second)
	for range 5 {
		if err := call(g, time.Millisecond, ok); !errors.Is(err, overload.ErrBreakerOpen) || !strings.Contains(err.Error(), `"slow"`) {
			t.Fatalf("call with slow open: %v; want slow's ErrBreakerOpen", err)
		}
	}
	clk.Advance(9 * time.Second)
	for i := range overload.DefaultProbes {
		if err := call(g, time.Millisecond, ok); err != nil {
			t.Fatalf("probe %d: %v (fast's probes leaked while slow refused)", i, err)
		}
	}
	for _, b := range g.Status().Breakers {
		if b.State != overload.Closed {
			t.Fatalf("breaker %s %v; want closed", b.Name, b.State)
		}
	}
}

// Many goroutines driving one breaker through its states, for the race
// detector; at the end a healthy service closes it.
func TestBreakerUnderConcurrentCalls(t *testing.T) {
	clk := newFakeClock()
	g := mustGuard(t, overload.WithClock(clk), overload.WithBreakers(
		overload.BreakerRule{Strategy: overload.ErrorRatio, RetryTimeout: 50 * time.Millisecond, StatWindow: time.Second}))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 2000 {
				tk, err := g.Acquire(context.Background())
				if err != nil {
					clk.Advance(time.Millisecond)
					continue
				}
				o := ok
				if r.IntN(2) == 0 {
					o = failed
				}
				tk.Done(o)
			}
		})
	}
	wg.Wait()
	for i := 0; g.Status().Breakers[0].State != overload.Closed; i++ {
		if i > 1000 {
			t.Fatalf("breaker %v after 1000 healthy calls; want closed", g.Status().Breakers[0].State)
		}
		clk.Advance(10 * time.Millisecond)
		_ = call(g, time.Millisecond, ok)
	}
}

func TestBreakerRulesAreValidated(t *testing.T) {
	for _, c := range []struct {
		rule overload.BreakerRule
		want string
	}{
		{overload.BreakerRule{}, "strategy is required"},
		{overload.BreakerRule{Strategy: "latency"}, `unknown strategy "latency"`},
		{overload.BreakerRule{Strategy: overload.ErrorRatio, Threshold: 1.5}, "threshold 1.5 must be a ratio"},
		{overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 0.5}, "must be a count of at least 1"},
		{overload.BreakerRule{Strategy: overload.ErrorRatio, MaxRT: time.Second}, "maxRT applies to slow_call_ratio only"},
		{overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: -1}, "maxRT -1ns must not be negative"},
		{overload.BreakerRule{Strategy: overload.ErrorRatio, StatWindow: time.Millisecond}, "statWindow 1ms must be at least 100ms"},
		{overload.BreakerRule{Strategy: overload.ErrorRatio, Probes: -2}, "probes -2"},
	} {
		_, err := overload.New("api", overload.WithBreakers(c.rule))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rule %+v: error %v; want one containing %q", c.rule, err, c.want)
		}
	}
	_, err := overload.New("api", overload.WithEndpointBreakers(
		overload.BreakerRule{Strategy: overload.ErrorRatio}, overload.BreakerRule{Strategy: overload.ErrorRatio, Threshold: 0.9}))
	if err == nil || !strings.Contains(err.Error(), `breaker "error_ratio": name used twice`) {
		t.Errorf("two unnamed rules of one strategy: %v; want a name clash error", err)
	}
}
