package overload_test

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/overload"
)

// fakeClock is a clock that moves only when told, for stepping breakers
// and windows through time without sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// skipClock is the real clock plus an offset the test can jump forward,
// for scenarios with real backends (real latencies) where a retry timeout
// should pass without waiting for it.
type skipClock struct {
	mu   sync.Mutex
	skip time.Duration
}

func (c *skipClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skip)
}

func (c *skipClock) Skip(d time.Duration) {
	c.mu.Lock()
	c.skip += d
	c.mu.Unlock()
}

// events records breaker state changes.
type events struct {
	mu  sync.Mutex
	all []overload.StateChange
}

func (e *events) record(c overload.StateChange) {
	e.mu.Lock()
	e.all = append(e.all, c)
	e.mu.Unlock()
}

// transitions returns "breaker:from>to" for every change so far.
func (e *events) transitions() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.all))
	for i, c := range e.all {
		out[i] = c.Breaker + ":" + c.From.String() + ">" + c.To.String()
	}
	return out
}

func (e *events) last() overload.StateChange {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.all[len(e.all)-1]
}

func mustGuard(t testing.TB, opts ...overload.Option) *overload.Guard {
	t.Helper()
	g, err := overload.New("api", append([]overload.Option{overload.WithLogger(testlog.New(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// metricValue reads one series of a registry.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
