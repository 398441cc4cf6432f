package overload

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkGuard measures what a request pays for a Guard: Acquire and
// Done with throttling, two service breakers and an endpoint breaker, from
// every core at once.
//
//	go test -run '^$' -bench BenchmarkGuard -benchmem ./overload
func BenchmarkGuard(b *testing.B) {
	g, err := New("api", WithLogger(slog.New(slog.DiscardHandler)),
		WithBreakers(BreakerRule{Strategy: SlowCallRatio}, BreakerRule{Strategy: ErrorRatio}),
		WithEndpointBreakers(BreakerRule{Strategy: ErrorRatio}))
	if err != nil {
		b.Fatal(err)
	}
	e := g.Endpoint("10.0.0.1:443")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := g.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			et, err := e.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			et.Done(Outcome{Status: 200})
			t.Done(Outcome{Status: 200})
		}
	})
}

// BenchmarkThrottleRecovery simulates, in virtual time and with no
// network, how long adaptive throttling takes to stop rejecting once a
// fault is over, for several windows and caps on the reject probability.
// A client sends 100 req/s for a minute to a healthy service, then for 5
// minutes either overloads it (300 req/s against a capacity of 100 req/s,
// the excess refused at once) or finds it down (every request fails), then
// sends 50 req/s (overload) or 100 req/s (outage) to a healthy service again.
// s-recover is the simulated time from the end of the fault until the
// reject probability falls under 5%.
//
//	go test -run '^$' -bench BenchmarkThrottleRecovery -benchtime=1x ./overload
func BenchmarkThrottleRecovery(b *testing.B) {
	for _, fault := range []string{"overload", "outage"} {
		for _, w := range []time.Duration{2 * time.Minute, 30 * time.Second, 10 * time.Second} {
			for _, maxP := range []float64{1, DefaultMaxRejectProbability} {
				b.Run(fmt.Sprintf("fault=%s/window=%v/cap=%v", fault, w, maxP), func(b *testing.B) {
					var d time.Duration
					for b.Loop() {
						d = simulateRecovery(Throttling{Window: w, MaxRejectProbability: maxP}.withDefaults(), fault == "outage", 5*time.Minute)
					}
					b.ReportMetric(d.Seconds(), "s-recover")
				})
			}
		}
	}
}

// simulateRecovery runs the scenario of BenchmarkThrottleRecovery in 1 ms
// steps and returns the recovery time (capped at 20 minutes).
func simulateRecovery(cfg Throttling, outage bool, faultFor time.Duration) time.Duration {
	th := newThrottle(cfg)
	r := rand.New(rand.NewPCG(1, 2))
	th.rand = r.Float64
	const step = int64(time.Millisecond)
	var now int64
	// run sends at rate for d against a service of the given capacity
	// (0: unlimited) or down; with stop, it returns how long until the
	// reject probability fell under 5%.
	run := func(d time.Duration, rate, capacity float64, down, stop bool) time.Duration {
		begin, end := now, now+int64(d)
		credit := 0.0
		for ; now < end; now += step {
			for range int(rate/1000 + r.Float64()) {
				if ok, _, _, _ := th.admit(now); !ok {
					continue
				}
				switch {
				case down:
					th.record(now, NoAnswer)
				case capacity == 0 || credit >= 1:
					credit--
					th.record(now, Success)
				default:
					th.record(now, Overloaded)
				}
			}
			credit = min(credit+capacity/1000, 2)
			if p, _, _ := th.probability(now); stop && p < 0.05 {
				return time.Duration(now - begin)
			}
		}
		return d
	}
	run(time.Minute, 100, 0, false, false)
	if outage {
		run(faultFor, 100, 0, true, false)
		return run(20*time.Minute, 100, 0, false, true)
	}
	run(faultFor, 300, 100, false, false)
	return run(20*time.Minute, 50, 0, false, true)
}
