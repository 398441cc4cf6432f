package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/leakcheck"
	"github.com/smartroute/smartroute/resolver"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// timeout bounds every test; a hang fails instead of eating the CI budget.
func timeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// watch runs a resolver's Watch in the background and records what it
// delivers.
type watch struct {
	states chan resolver.State
	cancel context.CancelFunc
	done   chan error

	mu  sync.Mutex
	all []resolver.State
}

// startWatch starts r.Watch under ctx; the watch is stopped at cleanup,
// which waits until Watch has returned.
func startWatch(t *testing.T, ctx context.Context, r resolver.Resolver) *watch {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	w := &watch{states: make(chan resolver.State, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- r.Watch(wctx, func(s resolver.State) {
			w.mu.Lock()
			w.all = append(w.all, s)
			w.mu.Unlock()
			w.states <- s
		})
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop cancels the watch and returns Watch's error. It may be called more
// than once.
func (w *watch) stop() error {
	w.cancel()
	err, ok := <-w.done
	if ok {
		close(w.done)
	}
	return err
}

// history returns every State delivered so far.
func (w *watch) history() []resolver.State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.all)
}

// waitFor returns the first State (from the next one delivered on) for
// which ok holds, and fails the test if none comes before ctx ends.
func (w *watch) waitFor(t *testing.T, ctx context.Context, what string, ok func(resolver.State) bool) resolver.State {
	t.Helper()
	var last resolver.State
	for {
		select {
		case s := <-w.states:
			if ok(s) {
				return s
			}
			last = s
		case <-ctx.Done():
			t.Fatalf("no State with %s; last: %s", what, describe(last))
		}
	}
}

// waitAddrs waits for a State without error whose addresses are want.
func (w *watch) waitAddrs(t *testing.T, ctx context.Context, want ...string) resolver.State {
	t.Helper()
	slices.Sort(want)
	return w.waitFor(t, ctx, fmt.Sprintf("endpoints %v and no error", want), func(s resolver.State) bool {
		return s.Err == nil && slices.Equal(addrs(s.Endpoints), want)
	})
}

// waitErr waits for a State carrying an error.
func (w *watch) waitErr(t *testing.T, ctx context.Context) resolver.State {
	t.Helper()
	return w.waitFor(t, ctx, "an error", func(s resolver.State) bool { return s.Err != nil })
}

func addrs(eps []resolver.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.Addr
	}
	return out
}

func describe(s resolver.State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "err=%v endpoints=[", s.Err)
	for i, e := range s.Endpoints {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s(w=%d zone=%q draining=%v %v)", e.Addr, e.Weight, e.Zone, e.Draining, e.Origin.Kind)
	}
	b.WriteString("]")
	return b.String()
}

// endpoint returns the endpoint with addr, failing the test if absent.
func endpoint(t *testing.T, s resolver.State, addr string) resolver.Endpoint {
	t.Helper()
	for _, e := range s.Endpoints {
		if e.Addr == addr {
			return e
		}
	}
	t.Fatalf("no endpoint %s in %s", addr, describe(s))
	return resolver.Endpoint{}
}

// metricValue returns the value of the series of name whose labels include
// want, or 0 if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// waitMetric polls a metric until it reaches at least min.
func waitMetric(t *testing.T, ctx context.Context, reg *prometheus.Registry, name string, labels map[string]string, min float64) float64 {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if v := metricValue(t, reg, name, labels); v >= min {
			return v
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s%v stayed below %v (at %v)", name, labels, min, metricValue(t, reg, name, labels))
		}
	}
}

func TestWatchReturnsPromptlyWhenContextEnds(t *testing.T) {
	t.Parallel()
	static, err := resolver.NewStatic("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c := etcdtest.Start(t)
	etcd, err := resolver.NewEtcd(c.Client(t), "api")
	if err != nil {
		t.Fatal(err)
	}
	srv := dnstest.Start(t)
	srv.SetA("api.example.test", 30, "127.0.0.1")
	dnsr, err := resolver.New("dns://" + srv.Addr() + "/api.example.test:443")
	if err != nil {
		t.Fatal(err)
	}
	// A name server that never answers: the cancel must cut the query.
	drop := dnstest.Start(t)
	drop.SetFault(dnstest.FaultDrop)
	dropping, err := resolver.New("dns://"+drop.Addr()+"/api.example.test:443", resolver.WithDNSTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    resolver.Resolver
	}{
		{"static", static},
		{"etcd", etcd},
		{"dns", dnsr},
		{"dns-query-in-flight", dropping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 20*time.Second)
			w := startWatch(t, ctx, tc.r)
			if tc.r == dropping {
				waitQueries(t, ctx, drop, "api.example.test", dns.TypeA, 1)
			} else {
				w.waitFor(t, ctx, "a first State", func(resolver.State) bool { return true })
			}
			start := time.Now()
			err := w.stop()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Watch took %v to return after cancel", d)
			}
		})
	}
}
