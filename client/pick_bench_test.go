package client

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchTable returns a table of n endpoints for policy on the real clock,
// with its coarse clock running, every endpoint measured, one in ten with
// a failure penalty and one in ten with a server load report: a pick
// computes what it computes in production (penalty decay, report age,
// the age of unanswered requests).
func benchTable(b *testing.B, policy Policy, n int) *table {
	tb, _ := testTable(b, addrs(n), WithoutProbe(), WithPolicy(policy), WithHashKey(HashByHeader("X")))
	runRealClock(b, tb)
	now := tb.cfg.now()
	for i, ep := range tb.snapshot().all {
		tb.observe(ep, outcomeSuccess, time.Duration(1+i%17)*time.Millisecond, now)
		switch i % 10 {
		case 3:
			tb.observe(ep, outcomeFailure, 0, now)
		case 7:
			ep.hot.report(float64(i%5), 4, now, tb.cfg.maxReportAge)
		}
	}
	tb.refreshNow(tb.clock.Now())
	return tb
}

// runRealClock puts tb on the real clock and runs its coarse clock (and
// so its refresh) until the benchmark ends.
func runRealClock(b *testing.B, tb *table) {
	epoch := time.Now()
	tb.cfg.now = func() int64 { return int64(time.Since(epoch)) }
	tb.clock = newCoarseClock(tb.cfg.now, tb.refresh)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tb.clock.run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
}

// BenchmarkPick measures one pick per policy and table size, serially and
// from all cores at once, on a moving clock. Every case must report 0
// allocs/op.
//
//	go test -run XXX -bench BenchmarkPick -benchmem ./client
func BenchmarkPick(b *testing.B) {
	for _, policy := range Policies() {
		for _, n := range []int{10, 100, 10000} {
			b.Run(fmt.Sprintf("%s/n=%d", policy, n), func(b *testing.B) {
				// Built here, not before b.Run: the table, its refresh and
				// its garbage exist only while its own picks are measured.
				tb := benchTable(b, policy, n)
				b.Run("serial", func(b *testing.B) {
					b.ReportAllocs()
					var key uint64
					for b.Loop() {
						if pickNext(tb, &key) == nil {
							b.Fatal("no pick")
						}
					}
				})
				b.Run("parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						var key uint64
						for pb.Next() {
							if pickNext(tb, &key) == nil {
								b.Fatal("no pick")
							}
						}
					})
				})
			})
		}
	}
}

// pickNext makes one pick from tb as a request would, with the next hash
// key after *key.
func pickNext(tb *table, key *uint64) *endpoint {
	*key += 0x9E3779B97F4A7C15
	pr := pickRequest{now: tb.clock.Now(), hash: *key, hasHash: true}
	return tb.snapshot().pick(&pr)
}

// TestPickDoesNotAllocate guards the zero-allocation promise in the
// ordinary test run, so it cannot rot between benchmark runs.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, policy := range Policies() {
		tb, clk := testTable(t, addrs(100), WithoutProbe(), WithPolicy(policy), WithHashKey(HashByHeader("X")),
			WithCanary(Canary{Labels: map[string]string{"none": "x"}, Share: 0.5}), WithZone(Zone{Local: "z"}), WithSlowStart(time.Second))
		var key uint64
		allocs := testing.AllocsPerRun(1000, func() {
			key += 0x9E3779B97F4A7C15
			pr := pickRequest{now: clk.now(), hash: key, hasHash: true}
			pr.addTried(tb.snapshot().pick(&pr))
			tb.snapshot().pick(&pr)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per pick, want 0", policy, allocs)
		}
	}
}
