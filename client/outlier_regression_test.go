package client

import (
	"testing"
	"time"

	"github.com/smartroute/smartroute/resolver"
)

// The count of ejected endpoints must not drift: it caps how many may be
// ejected, so a count stuck above zero would stop outlier detection.

// An endpoint removed after its ejection ran out, before the table swept
// it, leaves the count.
func TestEjectedCountSurvivesRemovingAnExpiredEjection(t *testing.T) {
	eps := addrs(2)
	tb, clk := testTable(t, eps, WithoutProbe())
	ep := tb.ep(eps[0].Addr)
	for range DefaultConsecutiveFailures {
		tb.observe(ep, outcomeFailure, time.Millisecond, clk.now())
	}
	if tb.ejected != 1 {
		t.Fatalf("ejected = %d after %d failures, want 1", tb.ejected, DefaultConsecutiveFailures)
	}
	clk.advance(DefaultBaseEjectionTime + time.Second) // ran out, not swept
	tb.update(resolver.State{Endpoints: eps[1:]})
	if tb.ejected != 0 {
		t.Fatalf("ejected = %d after the endpoint left, want 0", tb.ejected)
	}
}

// Failures between the end of an ejection and the sweep do not count the
// endpoint twice.
func TestEjectedCountSurvivesFailuresBeforeTheSweep(t *testing.T) {
	eps := addrs(30)
	tb, clk := testTable(t, eps, WithoutProbe())
	ep := tb.ep(eps[0].Addr)
	for range DefaultConsecutiveFailures {
		tb.observe(ep, outcomeFailure, time.Millisecond, clk.now())
	}
	clk.advance(DefaultBaseEjectionTime + time.Second)
	for range DefaultConsecutiveFailures {
		tb.observe(ep, outcomeFailure, time.Millisecond, clk.now())
	}
	tb.mu.Lock()
	tb.expireLocked(clk.now() + int64(time.Hour))
	got := tb.ejected
	tb.mu.Unlock()
	if got != 0 {
		t.Fatalf("ejected = %d once every ejection ended, want 0", got)
	}
}
