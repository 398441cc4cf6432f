package overload_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smartroute/smartroute/overload"
)

// A Transport guards every request of an http.Client. Here the service
// refuses everything with 503: throttling soon rejects most requests
// locally, and they never reach it.
func ExampleTransport() {
	var seen int
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen++
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer backend.Close()

	g, err := overload.New("api")
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: &overload.Transport{Guard: g}}
	var throttled int
	for range 100 {
		resp, err := hc.Get(backend.URL)
		if errors.Is(err, overload.ErrThrottled) {
			throttled++
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
	fmt.Println("the service saw fewer than half:", seen < 50, "; the rest were throttled:", seen+throttled == 100)
	// Output: the service saw fewer than half: true ; the rest were throttled: true
}

// The seed's rule: when a service answers slower than 800 ms, isolate it.
// Here a Guard is driven by hand with Acquire and Done.
func ExampleGuard_Acquire() {
	g, err := overload.New("payments", overload.WithBreakers(overload.BreakerRule{
		Strategy:  overload.SlowCallRatio,
		MaxRT:     800 * time.Millisecond,
		Threshold: 0.5, // half the calls slow…
		// …among at least 10 over the last 10 s: the defaults.
	}),
		// A clock that stands still, so that the output below does not
		// depend on how fast this example runs.
		overload.WithClock(stillClock{}))
	if err != nil {
		log.Fatal(err)
	}
	for range 10 {
		t, err := g.Acquire(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		t.Done(overload.Outcome{Latency: 1200 * time.Millisecond}) // as if it took 1.2 s
	}
	_, err = g.Acquire(context.Background())
	fmt.Println(errors.Is(err, overload.ErrBreakerOpen))
	fmt.Println(err)
	// Output:
	// true
	// overload: service "payments": circuit breaker open: breaker "slow_call_ratio" open for 5s more (it opened when 50% of calls slower than 800ms within 10s)
}

// A balancer keeps per-endpoint breakers: it skips endpoints whose
// breaker is open while picking, and acquires the one it picked.
func ExampleGuard_Endpoint() {
	g, err := overload.New("api", overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	if err != nil {
		log.Fatal(err)
	}
	bad := g.Endpoint("10.0.0.1:443")
	for range 10 {
		t, _ := bad.Acquire(context.Background())
		t.Done(overload.Outcome{Status: http.StatusInternalServerError})
	}
	for _, addr := range []string{"10.0.0.1:443", "10.0.0.2:443"} {
		fmt.Println(addr, g.Allow(addr))
	}
	// Output:
	// 10.0.0.1:443 false
	// 10.0.0.2:443 true
}

// A Shedder in front of a handler refuses work past its limit with 503 and
// Retry-After.
func ExampleShedder_Middleware() {
	s, err := overload.NewShedder(1)
	if err != nil {
		log.Fatal(err)
	}
	busy, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(busy)
		<-release
	})))
	defer srv.Close()

	go func() {
		if resp, err := http.Get(srv.URL); err == nil {
			resp.Body.Close()
		}
	}()
	<-busy // the one slot is taken
	resp, err := http.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	close(release)
	fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After"))
	fmt.Print(string(body))
	// Output:
	// 503 1
	// overload: server shedding load: 1 requests in flight
}

// The gRPC interceptor guards every unary call of a connection; refused
// calls fail with codes.Unavailable.
func ExampleUnaryClientInterceptor() {
	g, err := overload.New("api", overload.WithLimits(overload.Limits{MaxRequests: 256}))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("dns:///api.internal:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(overload.UnaryClientInterceptor(g)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// stillClock is a clock that never moves.
type stillClock struct{}

func (stillClock) Now() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }
