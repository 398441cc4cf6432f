package probe

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartroute/smartroute/internal/testbackend"
)

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// addrs returns the addr label values of name's series.
func addrs(t *testing.T, reg *prometheus.Registry, name string) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "addr" {
					out[lp.GetValue()] = true
				}
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	good := testbackend.MustHTTP(t)
	bad := testbackend.MustHTTP(t, testbackend.WithStatus(503))
	reg := prometheus.NewRegistry()
	p := newProber(t, HTTP{}, fast(WithRegisterer(reg), WithFall(2))...)
	rec := record(p)
	p.SetAddrs([]string{good.Addr(), bad.Addr()})
	rec.waitChange(t, good.Addr(), Healthy, 0)
	rec.waitChange(t, bad.Addr(), Unhealthy, 0)

	if got := gauge(t, reg, "smartroute_probe_healthy_endpoints"); got != 1 {
		t.Fatalf("healthy_endpoints = %v, want 1", got)
	}
	if got := gauge(t, reg, "smartroute_probe_failures_total"); got < 2 {
		t.Fatalf("failures_total = %v, want >= 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "smartroute_probe_duration_seconds"); err != nil || n != 2 {
		t.Fatalf("duration series = %d, %v; want success and failure", n, err)
	}
	if len(addrs(t, reg, "smartroute_probe_duration_seconds")) != 0 {
		t.Fatal("addr label without WithPerEndpointMetrics")
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}

	// A second prober on the same registerer shares the collectors.
	other := testbackend.MustHTTP(t)
	p2 := newProber(t, TCP{}, fast(WithRegisterer(reg))...)
	rec2 := record(p2)
	p2.SetAddrs([]string{other.Addr()})
	rec2.waitChange(t, other.Addr(), Healthy, 0)
	if got := gauge(t, reg, "smartroute_probe_healthy_endpoints"); got != 2 {
		t.Fatalf("healthy_endpoints with two probers = %v, want 2", got)
	}

	p.SetAddrs([]string{bad.Addr()}) // the healthy one leaves
	if got := gauge(t, reg, "smartroute_probe_healthy_endpoints"); got != 1 {
		t.Fatalf("healthy_endpoints after removing one = %v, want 1", got)
	}
	p2.Close()
	if got := gauge(t, reg, "smartroute_probe_healthy_endpoints"); got != 0 {
		t.Fatalf("healthy_endpoints after Close = %v, want 0", got)
	}
}

func TestPerEndpointMetrics(t *testing.T) {
	a := testbackend.MustHTTP(t)
	b := testbackend.MustHTTP(t)
	reg := prometheus.NewRegistry()
	p := newProber(t, TCP{}, fast(WithRegisterer(reg), WithPerEndpointMetrics(true))...)
	rec := record(p)
	p.SetAddrs([]string{a.Addr(), b.Addr()})
	rec.waitChange(t, a.Addr(), Healthy, 0)
	rec.waitChange(t, b.Addr(), Healthy, 0)
	if got := addrs(t, reg, "smartroute_probe_duration_seconds"); !got[a.Addr()] || !got[b.Addr()] {
		t.Fatalf("duration addr labels = %v", got)
	}
	if got := addrs(t, reg, "smartroute_probe_healthy_endpoints"); len(got) != 2 {
		t.Fatalf("healthy addr labels = %v", got)
	}
	p.SetAddrs([]string{a.Addr()})
	if got := addrs(t, reg, "smartroute_probe_duration_seconds"); got[b.Addr()] || !got[a.Addr()] {
		t.Fatalf("after removing %s: duration addr labels = %v", b.Addr(), got)
	}
	if got := addrs(t, reg, "smartroute_probe_healthy_endpoints"); got[b.Addr()] {
		t.Fatalf("after removing %s: healthy addr labels = %v", b.Addr(), got)
	}
}
