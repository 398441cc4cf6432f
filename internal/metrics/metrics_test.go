package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterSharesAnAlreadyRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "smartroute_test_total", Help: "test"}
	a, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	a.Inc()
	b.Inc()
	if got := testutil.ToFloat64(a); got != 2 {
		t.Fatalf("shared counter = %v, want 2", got)
	}
}

func TestRegisterReportsConflictingDescriptors(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "smartroute_x", Help: "a"})); err != nil {
		t.Fatal(err)
	}
	_, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "smartroute_x", Help: "b"}))
	if err == nil {
		t.Fatal("registering a gauge under a counter's name succeeded")
	}
}

func TestRegisterWithNilRegistererKeepsCollector(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "smartroute_y_total", Help: "y"})
	got, err := Register[prometheus.Counter](nil, c)
	if err != nil || got != c {
		t.Fatalf("Register(nil) = %v, %v", got, err)
	}
}
