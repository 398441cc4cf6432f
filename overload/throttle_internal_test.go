package overload

import (
	"math"
	"testing"
	"time"
)

func TestRejectProbabilityIsTheSREFormula(t *testing.T) {
	for _, c := range []struct {
		requests, accepts int64
		k, cap            float64
		want              float64
	}{
		{0, 0, 2, 1, 0},
		{100, 100, 2, 1, 0},           // all accepted
		{100, 50, 2, 1, 0},            // half accepted: K=2 tolerates it
		{100, 40, 2, 1, 20.0 / 101},   // (100 − 80) / 101
		{300, 100, 2, 1, 100.0 / 301}, // 3× overload, capacity accepted
		{1000, 0, 2, 1, 1000.0 / 1001},
		{1000, 0, 2, 0.9, 0.9},        // capped
		{100, 40, 1.5, 1, 40.0 / 101}, // (100 − 60) / 101
		{1, 0, 2, 1, 0.5},             // a first failure
	} {
		got := rejectProbability(c.requests, c.accepts, c.k, c.cap)
		if math.Abs(got-c.want) > 1e-12 {
			t.Errorf("rejectProbability(requests %d, accepts %d, k %v, cap %v) = %v; want %v", c.requests, c.accepts, c.k, c.cap, got, c.want)
		}
	}
}

func TestThrottleRejectsWithTheComputedProbability(t *testing.T) {
	th := newThrottle(Throttling{}.withDefaults())
	now := int64(time.Second)
	for i := range 100 {
		v := Overloaded
		if i < 40 {
			v = Success
		}
		th.record(now, v)
	}
	want := 20.0 / 101
	if p, req, acc := th.probability(now); math.Abs(p-want) > 1e-12 || req != 100 || acc != 40 {
		t.Fatalf("probability = %v (requests %d, accepts %d); want %v (100, 40)", p, req, acc, want)
	}
	// A draw just below p rejects, and the rejection counts as a request;
	// a draw at p admits.
	th.rand = func() float64 { return want - 1e-9 }
	if ok, _, _, _ := th.admit(now); ok {
		t.Fatal("draw below p admitted")
	}
	if _, req, _ := th.probability(now); req != 101 {
		t.Fatalf("requests after a local rejection = %d; want 101", req)
	}
	p, _, _ := th.probability(now)
	th.rand = func() float64 { return p }
	if ok, _, _, _ := th.admit(now); !ok {
		t.Fatal("draw at p rejected")
	}
}

func TestThrottleForgetsOutsideItsWindow(t *testing.T) {
	th := newThrottle(Throttling{Window: 10 * time.Second, Buckets: 10}.withDefaults())
	for range 50 {
		th.record(0, NoAnswer)
	}
	if p, _, _ := th.probability(int64(time.Second)); p == 0 {
		t.Fatal("no rejection after 50 failures")
	}
	if p, req, _ := th.probability(int64(11 * time.Second)); p != 0 || req != 0 {
		t.Fatalf("11 s later probability = %v over %d requests; want 0 over 0", p, req)
	}
}

func TestThrottleDoesNotCountIgnoredRequests(t *testing.T) {
	th := newThrottle(Throttling{}.withDefaults())
	for range 10 {
		th.record(0, Ignored)
	}
	if _, req, _ := th.probability(0); req != 0 {
		t.Fatalf("requests = %d after 10 ignored; want 0", req)
	}
}
