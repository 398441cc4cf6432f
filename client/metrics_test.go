package client_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// value returns the value of the one series of name whose labels include
// the given ones, or -1 when there is none.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// The client's metrics count what a dashboard shows: picks, requests by
// outcome, retries, ejections, latency, endpoints by state; per-endpoint
// series only when asked for.
func TestClientMetrics(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bad := testbackend.MustHTTP(t, testbackend.WithName("bad"), testbackend.WithStatus(http.StatusBadGateway))
	good := testbackend.MustHTTP(t, testbackend.WithName("good"))
	for _, perEndpoint := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		c := staticClient(t, endpointsOf(bad.Addr(), good.Addr()), client.WithoutProbe(), client.WithPolicy(client.RoundRobin),
			client.WithRegisterer(reg), client.WithPerEndpointMetrics(perEndpoint),
			client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 3, MaxEjectedShare: 0.5}))
		const n = 20
		for range n {
			if _, err := get(ctx, c, "http"); err != nil {
				t.Fatal(err)
			}
		}
		svc := map[string]string{"service": "api"}
		if v := value(t, reg, "smartroute_client_requests_total", map[string]string{"service": "api", "outcome": "ok"}); v != n {
			t.Errorf("requests_total{outcome=ok} = %v, want %d", v, n)
		}
		if v := value(t, reg, "smartroute_client_picks_total", map[string]string{"service": "api", "policy": "round_robin"}); v < n {
			t.Errorf("picks_total = %v, want at least %d", v, n)
		}
		if v := value(t, reg, "smartroute_client_retries_total", svc); v < 3 {
			t.Errorf("retries_total = %v, want the 502s retried", v)
		}
		if v := value(t, reg, "smartroute_client_ejections_total", svc); v != 1 {
			t.Errorf("ejections_total = %v, want 1", v)
		}
		if v := value(t, reg, "smartroute_client_request_duration_seconds", svc); v != n {
			t.Errorf("request_duration_seconds count = %v, want %d", v, n)
		}
		if v := value(t, reg, "smartroute_client_endpoints", map[string]string{"service": "api", "state": "ejected"}); v != 1 {
			t.Errorf("endpoints{state=ejected} = %v, want 1", v)
		}
		perEP := value(t, reg, "smartroute_client_endpoint_requests_total", map[string]string{"endpoint": good.Addr(), "outcome": "ok"})
		if perEndpoint != (perEP > 0) {
			t.Errorf("per-endpoint metrics %v: endpoint_requests_total = %v", perEndpoint, perEP)
		}
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) > 0 {
			var b strings.Builder
			for _, p := range problems {
				b.WriteString(p.Metric + ": " + p.Text + "; ")
			}
			t.Errorf("metric lint: %s", b.String())
		}
	}
}
