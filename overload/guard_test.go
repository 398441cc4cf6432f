package overload_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/overload"
)

func TestNewRefusesBadConfiguration(t *testing.T) {
	for _, c := range []struct {
		service string
		opt     overload.Option
		want    string
	}{
		{"", nil, "service name is empty"},
		{"api", overload.WithThrottling(overload.Throttling{Window: time.Millisecond}), "window 1ms must be at least 1s"},
		{"api", overload.WithThrottling(overload.Throttling{K: 0.5}), "k 0.5 must be at least 1"},
		{"api", overload.WithThrottling(overload.Throttling{Buckets: 5000}), "buckets 5000 must be within [1, 3600]"},
		{"api", overload.WithThrottling(overload.Throttling{MaxRejectProbability: 1.2}), "maxRejectProbability 1.2 must be within (0, 1]"},
		{"api", overload.WithEndpointMaxRequests(-1), "endpoint max requests -1 must not be negative"},
	} {
		var opts []overload.Option
		if c.opt != nil {
			opts = append(opts, c.opt)
		}
		_, err := overload.New(c.service, opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, …): %v; want an error containing %q", c.service, err, c.want)
		}
	}
}

func TestNilGuardAdmitsEverything(t *testing.T) {
	var g *overload.Guard
	tk, err := g.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tk.Done(overload.Outcome{Err: errors.New("boom")})
	if !g.Allow("10.0.0.1:80") || g.RejectProbability() != 0 {
		t.Fatal("nil guard refused")
	}
	e := g.Endpoint("10.0.0.1:80")
	et, err := e.Acquire(context.Background())
	if err != nil || !e.Allow() {
		t.Fatalf("nil guard's endpoint refused: %v", err)
	}
	et.Done(overload.Outcome{})
	g.Retain(nil)
	if st := g.Status(); st.Service != "" || len(g.Endpoints()) != 0 {
		t.Fatalf("nil guard status %+v", st)
	}
}

func TestThrottlingRejectsWhenTheServiceRefuses(t *testing.T) {
	clk := newFakeClock()
	reg := prometheus.NewRegistry()
	g := mustGuard(t, overload.WithClock(clk), overload.WithRegisterer(reg))
	// 100 requests in flight end, 40 accepted (the others refused with
	// 503): the SRE formula gives (100 − 2·40) / 101.
	var tickets []overload.Ticket
	for i := range 100 {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			t.Fatalf("request %d refused before any ended: %v", i, err)
		}
		tickets = append(tickets, tk)
	}
	for i, tk := range tickets {
		o := refused
		if i < 40 {
			o = ok
		}
		tk.Done(o)
	}
	want := 20.0 / 101
	if p := g.RejectProbability(); p != want {
		t.Fatalf("reject probability %v; want %v", p, want)
	}
	// Over many tries the share rejected follows the probability, which
	// grows as local rejections count as requests: at least ~20%, and
	// every rejection says why.
	var rejected int
	for range 2000 {
		tk, err := g.Acquire(context.Background())
		if err != nil {
			var rej *overload.RejectedError
			if !errors.Is(err, overload.ErrThrottled) || !errors.As(err, &rej) || rej.Reason != overload.ReasonThrottled {
				t.Fatalf("refusal %v; want ErrThrottled", err)
			}
			if !strings.Contains(err.Error(), `overload: service "api": throttled: rejected locally with probability`) ||
				!strings.Contains(err.Error(), "the service accepted 40 of the last") {
				t.Fatalf("message %q does not say why", err)
			}
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("gRPC code %v; want Unavailable", status.Code(err))
			}
			rejected++
			continue
		}
		tk.Done(refused)
	}
	if rejected < 400 || rejected > 1990 {
		t.Fatalf("%d of 2000 rejected; want a share of at least ~20%%", rejected)
	}
	if v := metricValue(t, reg, "smartroute_overload_rejections_total", map[string]string{"scope": "service", "reason": "throttled"}); v != float64(rejected) {
		t.Fatalf("throttled rejections metric %v; want %d", v, rejected)
	}
	if v := metricValue(t, reg, "smartroute_overload_throttle_reject_probability", nil); v < 0.2 || v > overload.DefaultMaxRejectProbability {
		t.Fatalf("reject probability gauge %v; want within [0.2, %v]", v, overload.DefaultMaxRejectProbability)
	}
	// The service recovers: after the window, the past is forgotten.
	clk.Advance(overload.DefaultThrottleWindow)
	if p := g.RejectProbability(); p != 0 {
		t.Fatalf("probability a window later %v; want 0", p)
	}
	if st := g.Status(); st.Requests != 0 || st.Accepts != 0 {
		t.Fatalf("status a window later %+v; want no counts", st)
	}
}

func TestThrottleProbabilityIsCapped(t *testing.T) {
	g := mustGuard(t, overload.WithClock(newFakeClock()), overload.WithThrottling(overload.Throttling{MaxRejectProbability: 0.8}))
	for range 1000 {
		if tk, err := g.Acquire(context.Background()); err == nil {
			tk.Done(overload.Outcome{Err: errors.New("connection refused")})
		}
	}
	if p := g.RejectProbability(); p != 0.8 {
		t.Fatalf("probability with every request failed: %v; want the cap 0.8", p)
	}
}

func TestClassifierDecidesWhatIsAccepted(t *testing.T) {
	// A service that signals overload with 502: only the classifier knows.
	g := mustGuard(t, overload.WithClock(newFakeClock()), overload.WithClassifier(func(o overload.Outcome) overload.Verdict {
		if o.Status == 502 {
			return overload.Overloaded
		}
		return overload.DefaultClassifier(o)
	}))
	for range 50 {
		_ = call(g, time.Millisecond, overload.Outcome{Status: 502})
	}
	if p := g.RejectProbability(); p == 0 {
		t.Fatal("502s under a classifier that calls them overload did not throttle")
	}
}

func TestDefaultClassifier(t *testing.T) {
	for _, c := range []struct {
		o    overload.Outcome
		want overload.Verdict
	}{
		{overload.Outcome{Status: 200}, overload.Success},
		{overload.Outcome{Status: 404}, overload.Success},
		{overload.Outcome{Status: 429}, overload.Overloaded},
		{overload.Outcome{Status: 503}, overload.Overloaded},
		{overload.Outcome{Status: 500}, overload.Failure},
		{overload.Outcome{Status: 504}, overload.Failure},
		{overload.Outcome{Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}, overload.NoAnswer},
		{overload.Outcome{Err: context.Canceled}, overload.Ignored},
		{overload.Outcome{Err: context.DeadlineExceeded}, overload.NoAnswer},
		{overload.Outcome{Err: &overload.RejectedError{Reason: overload.ReasonThrottled}}, overload.Ignored},
		{overload.Outcome{Err: status.Error(codes.ResourceExhausted, "")}, overload.Overloaded},
		{overload.Outcome{Err: status.Error(codes.Unavailable, "")}, overload.NoAnswer},
		{overload.Outcome{Err: status.Error(codes.DeadlineExceeded, "")}, overload.NoAnswer},
		{overload.Outcome{Err: status.Error(codes.Canceled, "")}, overload.Ignored},
		{overload.Outcome{Err: status.Error(codes.Internal, "")}, overload.Failure},
		{overload.Outcome{Err: status.Error(codes.Unimplemented, "")}, overload.Failure},
		{overload.Outcome{Err: status.Error(codes.InvalidArgument, "")}, overload.Success},
		{overload.Outcome{Err: status.Error(codes.PermissionDenied, "")}, overload.Success},
	} {
		if got := overload.DefaultClassifier(c.o); got != c.want {
			t.Errorf("DefaultClassifier(%+v) = %v; want %v", c.o, got, c.want)
		}
	}
}

func TestEndpointBreakersAndLimitsForABalancer(t *testing.T) {
	clk := newFakeClock()
	ev := &events{}
	reg := prometheus.NewRegistry()
	g := mustGuard(t, overload.WithClock(clk), overload.WithStateListener(ev.record), overload.WithRegisterer(reg),
		overload.WithPerEndpointMetrics(), overload.WithEndpointMaxRequests(2),
		overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	a, b := g.Endpoint("10.0.0.1:80"), g.Endpoint("10.0.0.2:80")
	if g.Endpoint("10.0.0.1:80") != a {
		t.Fatal("Endpoint returned a new state for a known address")
	}
	for range 10 {
		tk, err := a.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tk.Done(failed)
	}
	if g.Allow(a.Addr()) || a.Allow() {
		t.Fatal("endpoint with an open breaker allowed")
	}
	if !g.Allow(b.Addr()) || !g.Allow("10.0.0.9:80") {
		t.Fatal("healthy or unknown endpoint refused")
	}
	_, err := a.Acquire(context.Background())
	var rej *overload.RejectedError
	if !errors.As(err, &rej) || rej.Endpoint != "10.0.0.1:80" || !errors.Is(err, overload.ErrBreakerOpen) ||
		!strings.Contains(err.Error(), `service "api" endpoint 10.0.0.1:80: circuit breaker open`) {
		t.Fatalf("acquire on the broken endpoint: %v; want ErrBreakerOpen naming it", err)
	}
	if c := ev.last(); c.Endpoint != a.Addr() || c.To != overload.Open {
		t.Fatalf("event %+v; want the endpoint's breaker opening", c)
	}
	// The service breakers and throttling are not the endpoint's: the
	// service is untouched.
	if p := g.RejectProbability(); p != 0 {
		t.Fatalf("service reject probability %v after endpoint calls; want 0", p)
	}

	// The endpoint limit: two in flight, the third refused.
	t1, _ := b.Acquire(context.Background())
	t2, _ := b.Acquire(context.Background())
	if g.Allow(b.Addr()) {
		t.Fatal("endpoint at its limit allowed")
	}
	if _, err := b.Acquire(context.Background()); !errors.Is(err, overload.ErrConcurrencyLimit) {
		t.Fatalf("third request to the endpoint: %v; want ErrConcurrencyLimit", err)
	}
	t1.Done(ok)
	t2.Done(ok)

	if v := metricValue(t, reg, "smartroute_overload_endpoint_breakers", map[string]string{"breaker": "error_ratio", "state": "open"}); v != 1 {
		t.Fatalf("endpoints with an open breaker: %v; want 1", v)
	}
	if v := metricValue(t, reg, "smartroute_overload_endpoint_breaker_state", map[string]string{"endpoint": "10.0.0.1:80"}); v != 2 {
		t.Fatalf("per-endpoint state: %v; want 2 (open)", v)
	}
	if v := metricValue(t, reg, "smartroute_overload_rejections_total", map[string]string{"scope": "endpoint", "reason": "breaker_open"}); v != 1 {
		t.Fatalf("endpoint breaker rejections %v; want 1", v)
	}

	// Retain follows the endpoint set; forgotten endpoints leave the counts.
	g.Retain([]string{b.Addr()})
	var addrs []string
	for _, st := range g.Endpoints() {
		addrs = append(addrs, st.Addr)
	}
	if !slices.Equal(addrs, []string{b.Addr()}) {
		t.Fatalf("endpoints after Retain: %v", addrs)
	}
	if v := metricValue(t, reg, "smartroute_overload_endpoint_breakers", map[string]string{"state": "open"}); v != 0 {
		t.Fatalf("open endpoint breakers after forgetting the broken endpoint: %v; want 0", v)
	}
	if v := metricValue(t, reg, "smartroute_overload_endpoint_breakers", map[string]string{"state": "closed"}); v != 1 {
		t.Fatalf("closed endpoint breakers: %v; want 1", v)
	}
	g.Forget(b.Addr())
	if len(g.Endpoints()) != 0 {
		t.Fatal("Forget left the endpoint")
	}
}

func TestAcquireAndDoneDoNotAllocate(t *testing.T) {
	g := mustGuard(t,
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio}, overload.BreakerRule{Strategy: overload.ErrorRatio}),
		overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	e := g.Endpoint("10.0.0.1:80")
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		tk, err := g.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		et, err := e.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = g.Allow("10.0.0.1:80")
		et.Done(overload.Outcome{Status: 200})
		tk.Done(overload.Outcome{Status: 200})
	})
	// The windows allocate a few bytes once per bucket (a second), not
	// per request.
	if allocs >= 0.01 {
		t.Fatalf("%v allocations per request; want 0", allocs)
	}
}
