package loadreport

import (
	"testing"
	"time"
)

func TestRateWindowMeasuresThroughputAndMeanInFlight(t *testing.T) {
	t0 := time.Now()
	w := newRateWindow(time.Second, t0)
	for range 10 {
		w.done(100 * time.Millisecond)
	}
	if _, _, ok := w.rates(t0.Add(500 * time.Millisecond)); ok {
		t.Fatal("figures before a full window passed")
	}
	rps, mean, ok := w.rates(t0.Add(time.Second))
	if !ok || rps != 10 || mean != 1 {
		t.Fatalf("after 10 requests of 100ms in 1s: rps %v, mean RIF %v, ok %v; want 10, 1", rps, mean, ok)
	}
	for range 4 {
		w.done(time.Second)
	}
	if rps, mean, _ := w.rates(t0.Add(1500 * time.Millisecond)); rps != 10 || mean != 1 {
		t.Fatalf("mid-window figures changed: %v %v", rps, mean)
	}
	// The next report comes late, after an idle second: the window is
	// as long as it lasted.
	if rps, mean, _ := w.rates(t0.Add(3 * time.Second)); rps != 2 || mean != 2 {
		t.Fatalf("after 4 requests of 1s in 2s: rps %v, mean RIF %v; want 2, 2", rps, mean)
	}
	if rps, mean, _ := w.rates(t0.Add(5 * time.Second)); rps != 0 || mean != 0 {
		t.Fatalf("after an idle window: rps %v, mean RIF %v; want 0, 0", rps, mean)
	}
}

func TestReporterDerivesUtilizationFromTheWindow(t *testing.T) {
	const capacity = 4
	r := New(WithCapacity(capacity), WithRateWindow(time.Second))
	base := time.Now().Add(-2 * time.Second)
	r.window = newRateWindow(time.Second, base)
	for range 8 {
		r.window.done(500 * time.Millisecond) // 4 s in flight in all
	}
	before := time.Now()
	rep := r.Snapshot()
	after := time.Now()
	lo, hi := after.Sub(base).Seconds(), before.Sub(base).Seconds()
	if !rep.Has.Has(FieldRPS|FieldAppUtilization) || rep.RPS < 8/lo || rep.RPS > 8/hi {
		t.Fatalf("report %+v: want rps in [%v, %v]", rep, 8/lo, 8/hi)
	}
	if u := rep.AppUtilization; u < 4/lo/capacity || u > 4/hi/capacity {
		t.Fatalf("application_utilization %v, want mean RIF / capacity in [%v, %v]", u, 4/lo/capacity, 4/hi/capacity)
	}
	r.SetAppUtilization(0.9)
	if rep := r.Snapshot(); rep.AppUtilization != 0.9 {
		t.Fatalf("an explicit application utilization lost to the derived one: %v", rep.AppUtilization)
	}
}
