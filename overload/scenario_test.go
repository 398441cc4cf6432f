package overload_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/overload"
)

// The seed's scenario: "when the payment service's response time exceeds
// 800 ms, isolate its traffic automatically". The service's answers turn
// slower than 800 ms; its slow-call breaker opens within one stat window;
// calls then fail fast without reaching it (or get the fallback's answer);
// a probe while it is still slow opens the breaker again; once it recovers,
// the half-open probes close the breaker and traffic flows again.
//
// The backends are real and so are their latencies; only the retry timeout
// is skipped over (skipClock) rather than waited for.

const seedMaxRT = 800 * time.Millisecond

func seedGuard(t *testing.T, clk *skipClock, ev *events) *overload.Guard {
	return mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(), overload.WithStateListener(ev.record),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: seedMaxRT}))
}

// seedScenario drives the scenario through send (one call; it returns the
// guard's refusal, a refusal with a fallback answer marked by fellBack, or
// the call's own error), against a backend whose latency setLatency sets
// and whose calls requests counts.
func seedScenario(t *testing.T, g *overload.Guard, clk *skipClock, ev *events,
	send func(ctx context.Context) (fellBack bool, err error), setLatency func(time.Duration), requests func() int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	state := func() overload.State { return g.Status().Breakers[0].State }

	for range 5 {
		if _, err := send(ctx); err != nil {
			t.Fatalf("healthy service: %v", err)
		}
	}

	// The service slows down past MaxRT; a burst of calls (MinRequests of
	// them) all come back slow.
	setLatency(seedMaxRT + 200*time.Millisecond)
	slowSince := clk.Now()
	var wg sync.WaitGroup
	for range overload.DefaultMinRequests {
		wg.Go(func() {
			if _, err := send(ctx); err != nil {
				t.Errorf("slow call: %v", err)
			}
		})
	}
	wg.Wait()
	if state() != overload.Open {
		t.Fatalf("breaker %v after %d calls slower than %v; want open", state(), overload.DefaultMinRequests, seedMaxRT)
	}
	opened := ev.last()
	if took := opened.At.Sub(slowSince); opened.To != overload.Open || took > overload.DefaultStatWindow {
		t.Fatalf("breaker opened %v after the service slowed (event %+v); want within one stat window (%v)", took, opened, overload.DefaultStatWindow)
	}
	t.Logf("breaker opened %v after the service slowed past %v (stat window %v)", opened.At.Sub(slowSince).Round(time.Millisecond), seedMaxRT, overload.DefaultStatWindow)

	// Open: calls fail fast, or get the fallback's answer, and never reach
	// the service.
	before := requests()
	for range 20 {
		fellBack, err := send(ctx)
		if !fellBack && !errors.Is(err, overload.ErrBreakerOpen) {
			t.Fatalf("call with the breaker open: %v; want ErrBreakerOpen or the fallback", err)
		}
	}
	if n := requests() - before; n != 0 {
		t.Fatalf("%d calls reached the service with the breaker open", n)
	}
	t.Logf("breaker open: 20 calls failed fast or fell back, 0 reached the service")

	// A probe while the service is still slow opens it again.
	clk.Skip(overload.DefaultRetryTimeout)
	if _, err := send(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if state() != overload.Open {
		t.Fatalf("breaker %v after a slow probe; want open again", state())
	}

	// The service recovers: the half-open probes close the breaker.
	setLatency(time.Millisecond)
	clk.Skip(overload.DefaultRetryTimeout)
	before = requests()
	for i := range overload.DefaultProbes {
		if fellBack, err := send(ctx); err != nil || fellBack {
			t.Fatalf("probe %d after recovery: fell back %v, %v", i, fellBack, err)
		}
	}
	if state() != overload.Closed {
		t.Fatalf("breaker %v after %d fast probes; want closed", state(), overload.DefaultProbes)
	}
	for range 10 {
		if _, err := send(ctx); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	if n := requests() - before; n != int64(overload.DefaultProbes)+10 {
		t.Fatalf("service saw %d calls after recovery; want %d", n, overload.DefaultProbes+10)
	}
	t.Logf("a slow probe reopened it; after recovery %d probes closed it and the next 10 calls reached the service", overload.DefaultProbes)
	want := []string{"closed>open", "open>half_open", "half_open>open", "open>half_open", "half_open>closed"}
	var got []string
	for _, tr := range ev.transitions() {
		got = append(got, tr[strings.Index(tr, ":")+1:])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions %v; want %v", got, want)
	}
}

func TestSeedScenarioSlowHTTPServiceIsIsolated(t *testing.T) {
	clk, ev := &skipClock{}, &events{}
	b := testbackend.MustHTTP(t, testbackend.WithLatency(time.Millisecond))
	g := seedGuard(t, clk, ev)
	fellBack := errors.New("fell back")
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t),
		Fallback: func(req *http.Request, err error) (*http.Response, error) {
			if strings.HasSuffix(req.URL.Path, "/fallback") {
				return nil, fellBack
			}
			return nil, err
		}}}
	var n atomic.Int64
	send := func(ctx context.Context) (bool, error) {
		path := "/"
		if n.Add(1)%2 == 0 {
			path = "/fallback" // half the calls have a fallback
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL()+path, nil)
		resp, err := hc.Do(req)
		if errors.Is(err, fellBack) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false, errors.New(resp.Status)
		}
		return false, nil
	}
	seedScenario(t, g, clk, ev, send, b.SetLatency, b.Requests)
}

func TestSeedScenarioSlowGRPCServiceIsIsolated(t *testing.T) {
	clk, ev := &skipClock{}, &events{}
	b := testbackend.MustGRPC(t, testbackend.WithLatency(time.Millisecond))
	g := seedGuard(t, clk, ev)
	tc := dial(t, b.Addr(), grpc.WithUnaryInterceptor(overload.UnaryClientInterceptor(g)))
	send := func(ctx context.Context) (bool, error) {
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
		if st := status.Convert(err); err != nil && (st.Code() != codes.Unavailable || !strings.Contains(st.Message(), `breaker "slow_call_ratio" open`)) {
			t.Errorf("gRPC refusal %v; want Unavailable naming the open breaker", err)
		}
		return false, err
	}
	seedScenario(t, g, clk, ev, send, b.SetLatency, b.Requests)
}
