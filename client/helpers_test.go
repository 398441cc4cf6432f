package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// fastProbe probes every 25 ms and decides after one check, so tests see
// health changes quickly. The timeout is the default second: a dead
// backend refuses the connection at once, while a live one on a loaded
// machine may take a few hundred milliseconds to accept, and with fall 1 a
// shorter timeout would call it unhealthy.
func fastProbe() client.Option {
	return client.WithProbe(probe.TCP{}, probe.WithInterval(25*time.Millisecond),
		probe.WithTimeout(time.Second), probe.WithRise(1), probe.WithFall(1))
}

// backends starts n HTTP backends named b0..b(n-1) with the given latency.
func backends(t *testing.T, n int, latency time.Duration, opts ...testbackend.Option) []*testbackend.HTTP {
	t.Helper()
	bs := make([]*testbackend.HTTP, n)
	for i := range bs {
		bs[i] = testbackend.MustHTTP(t, append([]testbackend.Option{
			testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithLatency(latency)}, opts...)...)
	}
	return bs
}

func addrs(bs []*testbackend.HTTP) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr()
	}
	return out
}

// staticClient returns a ready client over a static resolver of eps.
func staticClient(t *testing.T, eps []resolver.Endpoint, opts ...client.Option) *client.Client {
	t.Helper()
	r, err := resolver.NewStaticEndpoints(eps...)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]client.Option{client.WithLogger(testlog.New(t))}, opts...)
	c, err := client.NewFromResolver("api", r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

func endpointsOf(addrs ...string) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = resolver.Endpoint{Addr: a}
	}
	return eps
}

// get sends GET http://api/ through c and returns the name of the backend
// that answered.
func get(ctx context.Context, c *client.Client, scheme string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://api/", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode >= 500 {
		return resp.Header.Get(testbackend.HeaderBackend), fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get(testbackend.HeaderBackend), nil
}

// tally counts the backends that answered, and the failures.
type tally struct {
	mu     sync.Mutex
	by     map[string]int
	failed int
	errs   []error
	total  int
}

func newTally() *tally { return &tally{by: make(map[string]int)} }

func (t *tally) add(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total++
	if err != nil {
		t.failed++
		if len(t.errs) < 5 {
			t.errs = append(t.errs, err)
		}
		return
	}
	t.by[name]++
}

func (t *tally) share(name string) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total == 0 {
		return 0
	}
	return float64(t.by[name]) / float64(t.total)
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.by))
	for n := range t.by {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%d ", n, t.by[n])
	}
	fmt.Fprintf(&b, "failed=%d/%d %v", t.failed, t.total, t.errs)
	return b.String()
}

// load sends n GETs from workers goroutines and tallies them. during, if
// set, is called once after half of the requests were sent.
func load(ctx context.Context, c *client.Client, n, workers int, during func()) *tally {
	return drive(ctx, n, workers, during, func() (string, error) { return get(ctx, c, "http") })
}

// drive makes n calls of one from workers goroutines and tallies the
// backends that answered; during, if set, runs once half-way.
func drive(ctx context.Context, n, workers int, during func(), one func() (string, error)) *tally {
	tl := newTally()
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				tl.add(one())
			}
		}()
	}
	for i := range n {
		if i == n/2 && during != nil {
			during()
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return tl
}

// readyTimeout bounds the waits for a state a test needs (connections
// READY, a health verdict, a watch event, traffic moving): generous, for a
// loaded 2-core machine with the race detector, where these take well
// under a second when all is right.
const readyTimeout = 30 * time.Second

// waitHealthy waits until the prober called every one of bs healthy.
func waitHealthy(t *testing.T, c *client.Client, bs ...*testbackend.HTTP) {
	t.Helper()
	waitFor(t, readyTimeout, "every backend to be probed healthy", func() bool {
		for _, b := range bs {
			if info(c, b.Addr()).Health != probe.Healthy {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func info(c *client.Client, addr string) client.EndpointInfo {
	eps := c.Endpoints()
	i := slices.IndexFunc(eps, func(e client.EndpointInfo) bool { return e.Addr == addr })
	if i < 0 {
		return client.EndpointInfo{}
	}
	return eps[i]
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
