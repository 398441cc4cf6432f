package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/resolver"
)

// Overload protection through the smartroute client (WithOverload), over
// HTTP, against real loopback backends. The gRPC balancer's tests are in
// grpc_overload_test.go.

// transitions records breaker state changes as "endpoint breaker:from>to"
// ("service" for the service's breakers).
type transitions struct {
	mu  sync.Mutex
	all []string
}

func (tr *transitions) record(ev overload.StateChange) {
	where := ev.Endpoint
	if where == "" {
		where = "service"
	}
	tr.mu.Lock()
	tr.all = append(tr.all, fmt.Sprintf("%s %s:%s>%s", where, ev.Breaker, ev.From, ev.To))
	tr.mu.Unlock()
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.all)
}

// hammer sends GETs from workers goroutines until stop is closed; the
// returned wait waits for them.
func hammer(ctx context.Context, c *client.Client, workers int, stop <-chan struct{}) (wait func()) {
	return untilStopped(ctx, workers, stop, func() (refused bool) {
		_, err := get(ctx, c, "http")
		return err != nil && rejectedErr(err)
	})
}

// untilStopped calls one from workers goroutines until stop is closed or
// ctx ends, pausing a millisecond after a call refused at once, so as not
// to spin; the returned wait waits for them.
func untilStopped(ctx context.Context, workers int, stop <-chan struct{}, one func() (refused bool)) (wait func()) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if one() {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	return wg.Wait
}

func rejectedErr(err error) bool {
	var rej *overload.RejectedError
	return errors.As(err, &rej)
}

func served(bs []*testbackend.HTTP) int64 {
	var n int64
	for _, b := range bs {
		n += b.Requests()
	}
	return n
}

// noEndpointCountsFailures fails t if any endpoint of c was ejected or
// counts a failure: refused requests are none of the endpoints' doing.
func noEndpointCountsFailures(t *testing.T, c *client.Client) {
	t.Helper()
	for _, e := range c.Endpoints() {
		if e.Ejected || e.Failures != 0 {
			t.Errorf("endpoint %s: ejected=%v failures=%d (%s), want neither: refusals and busy answers are not failures", e.Addr, e.Ejected, e.Failures, e.Why)
		}
	}
}

// The seed's scenario through the client: a service whose answers turn
// slower than 800 ms opens its slow-call breaker within one stat window;
// calls then fail at once with ErrBreakerOpen, or get the fallback, and
// reach no backend; once it is fast again, half-open probes close the
// breaker and calls reach it. No refusal counts against an endpoint, even
// with outlier detection ejecting at the first failure.
func TestOverloadSlowServiceBreakerOpensFailsFastAndRecovers(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, time.Millisecond)
	const statWindow = 5 * time.Second
	var tr transitions
	var useFallback atomic.Bool
	var fellBack atomic.Int64
	fallback := func(req *http.Request, err error) (*http.Response, error) {
		if !useFallback.Load() || !errors.Is(err, overload.ErrBreakerOpen) {
			return nil, err
		}
		fellBack.Add(1)
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{testbackend.HeaderBackend: {"fallback"}},
			Body: io.NopCloser(strings.NewReader("cached")), Request: req}, nil
	}
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 1, MaxEjectedShare: 1}),
		client.WithOverload(overload.WithStateListener(tr.record), overload.WithBreakers(overload.BreakerRule{
			Strategy: overload.SlowCallRatio, MaxRT: 800 * time.Millisecond, MinRequests: 6,
			StatWindow: statWindow, RetryTimeout: 5 * time.Second, Probes: 2,
		})),
		client.WithOverloadFallback(fallback))
	if tl := load(ctx, c, 10, 2, nil); tl.failed > 0 {
		t.Fatal(tl)
	}

	for _, b := range bs {
		b.SetLatency(900 * time.Millisecond)
	}
	slowAt := time.Now()
	stop := make(chan struct{})
	wait := hammer(ctx, c, 12, stop)
	waitFor(t, statWindow, "the service breaker to open within one stat window", func() bool {
		return c.Overload().Breakers[0].State == overload.Open
	})
	opened := time.Since(slowAt)
	close(stop)
	wait() // the slow calls admitted before it opened end

	before := served(bs)
	for range 20 {
		_, err := get(ctx, c, "http")
		var rej *overload.RejectedError
		if !errors.As(err, &rej) || !errors.Is(err, overload.ErrBreakerOpen) || rej.Endpoint != "" {
			t.Fatalf("call while the breaker is open: %v, want the service's ErrBreakerOpen", err)
		}
	}
	if ch, err := c.Pick(nil); err != nil || !strings.Contains(ch.Reason, `the service's circuit breaker "slow_call_ratio" is open`) {
		t.Errorf("Pick while the breaker is open: %q, %v; want the reason to say so", ch.Reason, err)
	}
	useFallback.Store(true)
	for range 10 {
		if name, err := get(ctx, c, "http"); err != nil || name != "fallback" {
			t.Fatalf("call with a fallback while the breaker is open: %q, %v", name, err)
		}
	}
	if n := served(bs) - before; n != 0 {
		t.Fatalf("%d calls reached the backends while the breaker was open", n)
	}
	t.Logf("opened %v after the slowdown (stat window %v); 30 calls refused, 10 by the fallback; %s", opened.Round(time.Millisecond), statWindow, c.Overload().Breakers[0].Name)

	for _, b := range bs {
		b.SetLatency(time.Millisecond)
	}
	waitFor(t, 30*time.Second, "half-open probes to close the breaker", func() bool {
		_, _ = get(ctx, c, "http")
		return c.Overload().Breakers[0].State == overload.Closed
	})
	fellBack.Store(0)
	if tl := load(ctx, c, 30, 3, nil); tl.failed > 0 || fellBack.Load() != 0 || tl.by["fallback"] > 0 {
		t.Fatalf("after recovery: %v (fallback %d)", tl, fellBack.Load())
	}
	want := []string{"service slow_call_ratio:closed>open", "service slow_call_ratio:open>half_open", "service slow_call_ratio:half_open>closed"}
	if got := tr.list(); !slices.Equal(got, want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
	noEndpointCountsFailures(t, c)
}

// An endpoint breaker takes one slow endpoint out of rotation, as an
// ejection would but without counting as one, while the others serve;
// Endpoints, Pick and the metrics say so; once it is fast again, the
// first requests after the retry timeout probe it and it comes back.
func TestOverloadEndpointBreakerTakesTheSlowEndpointOut(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, time.Millisecond)
	reg := prometheus.NewRegistry()
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithRegisterer(reg),
		client.WithOverload(overload.WithoutThrottling(), overload.WithEndpointBreakers(overload.BreakerRule{
			Strategy: overload.SlowCallRatio, MaxRT: 300 * time.Millisecond, MinRequests: 3,
			StatWindow: 5 * time.Second, RetryTimeout: 6 * time.Second, Probes: 1,
		})))
	slow := bs[2]
	slow.SetLatency(400 * time.Millisecond)
	stop := make(chan struct{})
	wait := hammer(ctx, c, 6, stop)
	waitFor(t, 10*time.Second, "the slow endpoint's breaker to open", func() bool { return info(c, slow.Addr()).Breaker == overload.Open })
	close(stop)
	wait()
	waitFor(t, 5*time.Second, "the table to take it out", func() bool { return !info(c, slow.Addr()).Eligible })

	e := info(c, slow.Addr())
	if e.Ejected || !strings.HasPrefix(e.Why, `circuit breaker "slow_call_ratio" open`) || len(e.Breakers) != 1 {
		t.Fatalf("slow endpoint: ejected=%v why=%q breakers=%+v", e.Ejected, e.Why, e.Breakers)
	}
	t.Logf("slow endpoint: %s", e.Why)
	if v := value(t, reg, "smartroute_client_endpoints", map[string]string{"service": "api", "state": "breaker_open"}); v != 1 {
		t.Errorf("smartroute_client_endpoints{state=breaker_open} = %v, want 1", v)
	}
	if v := value(t, reg, "smartroute_overload_endpoint_breakers", map[string]string{"service": "api", "state": "open"}); v != 1 {
		t.Errorf("smartroute_overload_endpoint_breakers{state=open} = %v, want 1", v)
	}
	before := slow.Requests()
	for range 10 {
		if ch, err := c.Pick(nil); err != nil || ch.Addr == slow.Addr() {
			t.Fatalf("Pick chose %v (%v), the endpoint whose breaker is open", ch.Addr, err)
		}
	}
	tl := load(ctx, c, 60, 3, nil)
	if tl.failed > 0 || slow.Requests() != before || tl.by["b0"] == 0 || tl.by["b1"] == 0 {
		t.Fatalf("with the breaker open: %v, %d requests reached the slow endpoint", tl, slow.Requests()-before)
	}

	slow.SetLatency(time.Millisecond)
	waitFor(t, 30*time.Second, "a probe to close the endpoint's breaker", func() bool {
		_, _ = get(ctx, c, "http")
		e := info(c, slow.Addr())
		return e.Breaker == overload.Closed && e.Eligible
	})
	if tl := load(ctx, c, 60, 3, nil); tl.failed > 0 || tl.by["b2"] < 10 {
		t.Fatalf("after recovery: %v, want b2 back in rotation", tl)
	}
	noEndpointCountsFailures(t, c)
}

// Endpoint breakers obey the panic threshold as ejections do: with every
// endpoint's breaker open, requests go to all of them rather than fail.
func TestOverloadEndpointBreakersWithinThePanicRule(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 2, 400*time.Millisecond)
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithOverload(overload.WithoutThrottling(), overload.WithEndpointBreakers(overload.BreakerRule{
			Strategy: overload.SlowCallRatio, MaxRT: 300 * time.Millisecond, MinRequests: 2,
			StatWindow: 5 * time.Second, RetryTimeout: time.Minute,
		})))
	stop := make(chan struct{})
	wait := hammer(ctx, c, 4, stop)
	waitFor(t, 10*time.Second, "both breakers to open", func() bool {
		return info(c, bs[0].Addr()).Breaker == overload.Open && info(c, bs[1].Addr()).Breaker == overload.Open
	})
	close(stop)
	wait()
	waitFor(t, 5*time.Second, "the table to see them", func() bool { return !info(c, bs[0].Addr()).Eligible && !info(c, bs[1].Addr()).Eligible })
	before := served(bs)
	tl := load(ctx, c, 8, 4, nil)
	if tl.failed > 0 || served(bs)-before != 8 {
		t.Fatalf("with every breaker open: %v, %d reached the backends; want panic mode to send them all", tl, served(bs)-before)
	}
	if why := info(c, bs[0].Addr()).Why; !strings.Contains(why, "panic mode: still picked") {
		t.Errorf("Why = %q, want the panic mode noted", why)
	}
}

// peaks tracks the requests a set of backends work on at once, each and
// all together, from a middleware in front of everything they do.
type peaks struct {
	all, allPeak   atomic.Int64
	each, eachPeak []atomic.Int64
}

func newPeaks(n int) *peaks {
	return &peaks{each: make([]atomic.Int64, n), eachPeak: make([]atomic.Int64, n)}
}

func raise(peak *atomic.Int64, v int64) {
	for {
		p := peak.Load()
		if v <= p || peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// enter counts a request in at backend i and returns its exit.
func (p *peaks) enter(i int) func() {
	raise(&p.allPeak, p.all.Add(1))
	raise(&p.eachPeak[i], p.each[i].Add(1))
	return func() {
		p.each[i].Add(-1)
		p.all.Add(-1)
	}
}

func (p *peaks) middleware(i int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer p.enter(i)()
			next.ServeHTTP(w, r)
		})
	}
}

// The service's and the endpoints' concurrency limits hold exactly under
// concurrent load (run with -race): the backends never see more at once
// than the limits allow; the requests past them fail at once with
// ErrConcurrencyLimit, and none counts against an endpoint.
func TestOverloadConcurrencyLimitsHoldExactly(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	const service, perEndpoint = 5, 2
	pk := newPeaks(3)
	bs := make([]*testbackend.HTTP, 3)
	for i := range bs {
		bs[i] = testbackend.MustHTTP(t, testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithLatency(5*time.Millisecond),
			testbackend.WithMiddleware(pk.middleware(i)))
	}
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 1, MaxEjectedShare: 1}),
		client.WithOverload(overload.WithoutThrottling(), overload.WithLimits(overload.Limits{MaxRequests: service}),
			overload.WithEndpointMaxRequests(perEndpoint)))
	var ok, refused, other atomic.Int64
	var otherErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 40 {
				_, err := get(ctx, c, "http")
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, overload.ErrConcurrencyLimit):
					refused.Add(1)
				default:
					other.Add(1)
					otherErr.Store(&err)
				}
			}
		})
	}
	wg.Wait()
	if other.Load() > 0 {
		t.Fatalf("%d requests failed otherwise than by a limit: %v", other.Load(), *otherErr.Load())
	}
	if pk.allPeak.Load() > service {
		t.Errorf("the backends worked on %d requests at once, the service limit is %d", pk.allPeak.Load(), service)
	}
	for i := range bs {
		if p := pk.eachPeak[i].Load(); p > perEndpoint {
			t.Errorf("b%d worked on %d requests at once, the endpoint limit is %d", i, p, perEndpoint)
		}
	}
	if ok.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d served, %d refused: the load should have met the limits", ok.Load(), refused.Load())
	}
	t.Logf("640 requests from 16 goroutines: %d served, %d refused; peak %d in flight (limit %d), per endpoint %d/%d/%d (limit %d)",
		ok.Load(), refused.Load(), pk.allPeak.Load(), service, pk.eachPeak[0].Load(), pk.eachPeak[1].Load(), pk.eachPeak[2].Load(), perEndpoint)
	if st := c.Overload(); st.InFlight != 0 || st.RetriesInFlight != 0 {
		t.Errorf("after the load: %+v, want nothing held", st)
	}
	noEndpointCountsFailures(t, c)
}

// An endpoint at its limit is passed over for another, and Pick says so;
// when every pick refuses, the request fails at once with the endpoint's
// ErrConcurrencyLimit.
func TestOverloadEndpointAtItsLimitIsPassedOver(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	stuck := testbackend.MustHTTP(t, testbackend.WithName("stuck"), testbackend.WithLatency(time.Hour))
	free := testbackend.MustHTTP(t, testbackend.WithName("free"))
	c := staticClient(t, endpointsOf(stuck.Addr(), free.Addr()), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithOverload(overload.WithEndpointMaxRequests(1)))
	hold, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			req, _ := http.NewRequestWithContext(hold, http.MethodGet, "http://api/", nil)
			resp, err := c.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if hold.Err() != nil {
				return
			}
		}
	}()
	waitFor(t, 10*time.Second, "a request to hold the stuck endpoint", func() bool { return info(c, stuck.Addr()).InFlight == 1 })
	var skipped bool
	for range 10 {
		ch, err := c.Pick(nil)
		if err != nil || ch.Addr != free.Addr() {
			t.Fatalf("Pick: %+v, %v; want the free endpoint", ch, err)
		}
		if len(ch.Skipped) > 0 {
			skipped = true
			if ch.Skipped[0].Addr != stuck.Addr() || !strings.Contains(ch.Reason, "at its limit of 1 requests in flight") {
				t.Fatalf("Pick: %+v", ch)
			}
		}
	}
	if !skipped {
		t.Fatal("round robin never chose the stuck endpoint first in 10 picks")
	}
	if tl := load(ctx, c, 20, 1, nil); tl.failed > 0 || tl.by["free"] != 20 {
		t.Fatalf("%v: want every request at the free endpoint", tl)
	}
	free.SetLatency(time.Hour)
	hold2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		req, _ := http.NewRequestWithContext(hold2, http.MethodGet, "http://api/", nil)
		if resp, err := c.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "a request to hold the free endpoint too", func() bool { return info(c, free.Addr()).InFlight == 1 })
	_, err := get(ctx, c, "http")
	var rej *overload.RejectedError
	if !errors.As(err, &rej) || rej.Reason != overload.ReasonConcurrencyLimit || rej.Endpoint == "" {
		t.Fatalf("with every endpoint at its limit: %v, want an endpoint's ErrConcurrencyLimit", err)
	}
	cancel()
	cancel2()
	<-done
	<-done2
}

// Busy is not broken: a server that refuses work with 503 or 429 is never
// ejected for it (its answers add the short failure penalty and count as
// Busy), while one answering 502 is.
func TestOverloadBusyAnswersDoNotEject(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	bs := backends(t, 4, time.Millisecond)
	bs[0].SetStatus(http.StatusServiceUnavailable)
	bs[1].SetStatus(http.StatusTooManyRequests)
	bs[2].SetStatus(http.StatusBadGateway)
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
		client.WithRetries(client.RetryPolicy{Disabled: true}),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 2, MaxEjectedShare: 1}))
	load(ctx, c, 80, 1, nil)
	for i, b := range bs[:2] {
		e := info(c, b.Addr())
		if e.Ejected || e.Failures != 0 || e.Busy < 10 {
			t.Errorf("b%d answering %d: ejected=%v failures=%d busy=%d; want it busy, not ejected", i, []int{503, 429}[i], e.Ejected, e.Failures, e.Busy)
		}
	}
	if e := info(c, bs[2].Addr()); !e.Ejected {
		t.Errorf("b2 answering 502 was not ejected: %+v", e)
	}
}

// A server that sheds load (overload.Shedder: 503 past its limit) under
// more load than it can take is never ejected for it, and the client's
// throttling, which its 503s drive, never counts against it either: every
// endpoint stays in rotation.
func TestOverloadSheddingServerIsNotEjected(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := make([]*testbackend.HTTP, 2)
	for i := range bs {
		shed, err := overload.NewShedder(1, overload.WithShedLogger(testlog.New(t)))
		if err != nil {
			t.Fatal(err)
		}
		bs[i] = testbackend.MustHTTP(t, testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithLatency(10*time.Millisecond),
			testbackend.WithCapacity(1), testbackend.WithMiddleware(shed.Middleware))
	}
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe(),
		client.WithRetries(client.RetryPolicy{Disabled: true}),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 2, MaxEjectedShare: 1}),
		client.WithOverload())
	var ok, shed, throttled atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for range 30 {
				_, err := get(ctx, c, "http")
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, overload.ErrThrottled):
					throttled.Add(1)
				case strings.Contains(err.Error(), "status 503"):
					shed.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("360 requests: %d served, %d shed (503), %d throttled locally; reject probability now %.2f", ok.Load(), shed.Load(), throttled.Load(), c.Overload().RejectProbability)
	if shed.Load() == 0 || throttled.Load() == 0 {
		t.Fatalf("%d shed, %d throttled: the load should have met both", shed.Load(), throttled.Load())
	}
	noEndpointCountsFailures(t, c)
	for _, e := range c.Endpoints() {
		if !e.Eligible {
			t.Errorf("%s out of rotation: %s", e.Addr, e.Why)
		}
	}
}

// A bad overload configuration is refused by New.
func TestOverloadBadConfigurationIsRefused(t *testing.T) {
	bs := backends(t, 1, 0)
	r, err := resolver.NewStaticEndpoints(endpointsOf(bs[0].Addr())...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.NewFromResolver("api", r, client.WithOverload(overload.WithBreakers(overload.BreakerRule{Strategy: "fastest"})))
	if err == nil || !strings.Contains(err.Error(), `unknown strategy "fastest"`) {
		t.Fatalf("New with an unknown breaker strategy: %v", err)
	}
}
