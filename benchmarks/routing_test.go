package benchmarks

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// A routing scenario: loopback HTTP backends with injected latency, a fixed
// number of requests sent through fresh clients, and the figures a user
// would notice. Every iteration of the benchmark runs the whole scenario
// (so -benchtime=1x runs it once); figures are over all iterations.
type routingScenario struct {
	name     string
	backends int
	capacity int // workers per backend; 0: no limit
	clients  int // separate Client instances…
	workers  int // …each used by this many goroutines
	requests int // per iteration, over all clients
	setup    func(e *env)
	half     func(e *env) // at request requests/2, if set
	// worst is the backend whose share is reported as worst-share (over
	// the second half when half is set); -1 reports max-share, the share
	// of the busiest backend, instead.
	worst int
	// policies are the policies compared with the oracle (nil: all).
	policies []client.Policy
	// reports makes the backends report their load (package
	// loadreport: requests in flight and capacity on every answer).
	reports bool
	// winner, when set (≥ 0), is the backend that becomes the fastest
	// half-way: its share after the change is reported as win-share, and
	// ms-win is how long after its first fast answer it took half of a
	// window of winWindow requests.
	winner int
}

// Follow-time detection for the shift scenario: traffic has followed once
// no window of followWindow consecutive requests sends more than followShare
// of them to the backend that became slow (see followTime).
const (
	followWindow = 40
	followShare  = 0.10
	winWindow    = 40
	winShare     = 0.5
)

// fewPolicies are the contenders of the newer scenarios: the latency-aware
// policies and the two that ignore latency, round robin and least request.
var fewPolicies = []client.Policy{client.LeastLatency, client.P2C, client.RoundRobin, client.LeastRequest}

func routingScenarios() []routingScenario {
	const (
		fast = 2 * time.Millisecond
		slow = 22 * time.Millisecond
	)
	return []routingScenario{{
		// Five backends, one 20 ms slower than the others.
		name: "slow_one", backends: 5, clients: 1, workers: 4, requests: 800, worst: 4, winner: -1,
		setup: func(e *env) {
			for i := range 4 {
				e.setLatency(i, fast)
			}
			e.setLatency(4, slow)
		},
	}, {
		// Five equal backends, but 8% of b4's answers are 50× slower
		// (100 ms): its mean is 4.9× the others', its p99 50×; spread
		// evenly, 1.6% of all answers are slow, enough to show in the p99.
		name: "heavy_tail", backends: 5, clients: 1, workers: 4, requests: 1200, worst: 4, winner: -1,
		setup: func(e *env) {
			for i := range 5 {
				e.setLatency(i, fast)
			}
			e.setHeavyTail(4, 0.08, 50)
		},
	}, {
		// Two workers per backend, two fast backends (3 ms) and three
		// slower ones (5 ms), 8 separate clients with one request in flight
		// each: 8 requests against 10 workers. No client sees the others'
		// load, so a policy that sends each client to the fastest backend
		// herds them all onto the two fast ones (4 workers), which queue
		// while the rest idle.
		name: "capacity", backends: 5, capacity: 2, clients: 8, workers: 1, requests: 1200, worst: -1, winner: -1,
		setup: func(e *env) {
			for i := range 5 {
				e.setLatency(i, 5*time.Millisecond)
			}
			e.setLatency(0, 3*time.Millisecond)
			e.setLatency(1, 3*time.Millisecond)
		},
	}, {
		// capacity again, with the backends reporting their load: every
		// answer says how many requests the backend has in flight (from
		// all clients) and how many it serves at once.
		name: "capacity_reports", backends: 5, capacity: 2, clients: 8, workers: 1, requests: 1200, worst: -1, winner: -1, reports: true,
		setup: func(e *env) {
			for i := range 5 {
				e.setLatency(i, 5*time.Millisecond)
			}
			e.setLatency(0, 3*time.Millisecond)
			e.setLatency(1, 3*time.Millisecond)
		},
	}, {
		// b0 is the fastest (2 ms, the others 5 ms) and takes most traffic;
		// half-way it becomes 25 ms. ms-follow is how long until its share
		// falls under 10% for good; worst-share is its share after the
		// change.
		name: "shift", backends: 5, clients: 1, workers: 4, requests: 1200, worst: 0, winner: -1,
		setup: func(e *env) {
			for i := range 5 {
				e.setLatency(i, 5*time.Millisecond)
			}
			e.setLatency(0, fast)
		},
		half: func(e *env) { e.setLatency(0, 25*time.Millisecond) },
	}, {
		// The quickstart's backends (3, 6, 10, 15 and 25 ms, no capacity
		// limit) under 4 goroutines without pause: sending everything to
		// the 3 ms one is best, and in-flight requests do not slow it.
		name: "quickstart", policies: fewPolicies, backends: 5, clients: 1, workers: 4, requests: 1500, worst: 4, winner: -1,
		setup: func(e *env) {
			for i, d := range []time.Duration{3, 6, 10, 15, 25} {
				e.setLatency(i, d*time.Millisecond)
			}
		},
	}, {
		// b4 stalls: every answer takes 1 s (the probe still connects).
		// It should get one request, the one that finds out.
		name: "stall", policies: fewPolicies, backends: 5, clients: 1, workers: 4, requests: 400, worst: 4, winner: -1,
		setup: func(e *env) {
			e.reset(2 * time.Millisecond)
			e.setLatency(4, time.Second)
		},
	}, {
		// b4 answers 502 at once: fast, and wrong. Retries (on by
		// default for GETs) hide the failures; worst-share is how much
		// traffic it wastes.
		name: "fail_fast", policies: fewPolicies, backends: 5, clients: 1, workers: 4, requests: 800, worst: 4, winner: -1,
		setup: func(e *env) {
			e.reset(2 * time.Millisecond)
			e.setLatency(4, 0)
			e.setFailing(4, true)
		},
	}, {
		// The reverse of shift: b0 is the slowest (25 ms, the others 5 ms)
		// and half-way becomes the fastest (2 ms). win-share is its share
		// after the change (the oracle's is 1); ms-win how long after its
		// first fast answer it took half of the requests.
		name: "recover", policies: fewPolicies, backends: 5, clients: 1, workers: 4, requests: 4000, worst: 4, winner: 0,
		setup: func(e *env) {
			e.reset(5 * time.Millisecond)
			e.setLatency(0, 25*time.Millisecond)
		},
		half: func(e *env) { e.setLatency(0, 2*time.Millisecond) },
	}, {
		// A wide fleet: 100 backends with latencies spread evenly over
		// 2–40 ms, no capacity limit, 8 goroutines.
		name: "wide", policies: fewPolicies, backends: 100, clients: 1, workers: 8, requests: 8000, worst: 99, winner: -1,
		setup: func(e *env) {
			for i := range e.bs {
				e.setLatency(i, 2*time.Millisecond+time.Duration(i)*38*time.Millisecond/99)
			}
		},
	}}
}

// BenchmarkRouting measures routing quality on real loopback HTTP backends:
// for every policy and for an oracle that always picks the truly fastest
// backend (it knows the injected latencies and queues), the mean, p50 and
// p99 latency (ms-mean, ms-p50, ms-p99) and the share of requests sent to
// the worst backend (worst-share), or to the busiest (max-share) where all
// are worth using. The shift scenario also reports ms-follow.
//
//	go test -run '^$' -bench BenchmarkRouting -benchtime=1x ./benchmarks
func BenchmarkRouting(b *testing.B) {
	for _, sc := range routingScenarios() {
		b.Run("scenario="+sc.name, func(b *testing.B) {
			var opts []testbackend.Option
			if sc.reports {
				opts = append(opts, testbackend.WithLoadReport())
			}
			e := newEnv(b, sc.backends, 0, sc.capacity, opts...)
			b.Run("policy=oracle", func(b *testing.B) { runRouting(b, sc, e, "") })
			policies := sc.policies
			if policies == nil {
				policies = client.Policies()
			}
			for _, p := range policies {
				b.Run("policy="+string(p), func(b *testing.B) { runRouting(b, sc, e, p) })
			}
		})
	}
}

// runRouting runs scenario sc b.N times with policy p (the oracle when p is
// empty) and reports its figures.
func runRouting(b *testing.B, sc routingScenario, e *env, p client.Policy) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		lat       []time.Duration
		worst     []float64
		follows   []time.Duration
		wins      []time.Duration
		winShares []float64
		failures  int
	)
	for b.Loop() {
		b.StopTimer()
		sc.setup(e)
		targets := make([]target, sc.clients)
		closers := make([]func(), sc.clients)
		for i := range targets {
			if p == "" {
				o := e.oracle()
				targets[i], closers[i] = target{rt: o, url: "http://" + service + "/"}, o.Close
			} else {
				c := newClient(b, e.addrs(), p)
				targets[i], closers[i] = target{rt: c, url: "http://" + service + "/"}, func() { c.Close() }
			}
		}
		var half func()
		if sc.half != nil {
			half = func() { sc.half(e) }
		}
		b.StartTimer()
		samples, switched := drive(ctx, targets, sc.workers, sc.requests, half)
		b.StopTimer()
		for _, c := range closers {
			c()
		}
		for _, s := range samples {
			if s.backend >= 0 {
				lat = append(lat, s.latency)
			}
		}
		counted := samples
		if sc.half != nil {
			counted = slices.DeleteFunc(slices.Clone(samples), func(s sample) bool { return s.start < switched })
		}
		if sc.winner >= 0 {
			share, _ := shares(counted, sc.backends)
			winShares = append(winShares, share[sc.winner])
			if d, ok := winTime(samples, switched, sc.winner, winWindow, winShare); ok {
				wins = append(wins, d)
			} else {
				wins = append(wins, lastEnd(samples)-switched) // never won: the whole second half
			}
		} else if sc.half != nil {
			d, ok := followTime(samples, switched, sc.worst, followWindow, followShare)
			if !ok {
				// Never followed: count the whole second half, the
				// most the scenario can show.
				d = lastEnd(samples) - switched
			}
			follows = append(follows, d)
		}
		share, failed := shares(counted, sc.backends)
		failures += failed
		if sc.worst >= 0 {
			worst = append(worst, share[sc.worst])
		} else {
			worst = append(worst, slices.Max(share))
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
	unit := "worst-share"
	if sc.worst < 0 {
		unit = "max-share"
	}
	b.ReportMetric(meanFloat(worst), unit)
	if len(follows) > 0 {
		b.ReportMetric(ms(mean(follows)), "ms-follow")
	}
	if len(wins) > 0 {
		b.ReportMetric(ms(mean(wins)), "ms-win")
		b.ReportMetric(meanFloat(winShares), "win-share")
	}
	if failures > 0 {
		b.ReportMetric(float64(failures)/float64(b.N), "errors/op")
	}
}

// lastEnd returns when the last request of samples ended.
func lastEnd(samples []sample) time.Duration {
	var d time.Duration
	for _, s := range samples {
		d = max(d, s.start+s.latency)
	}
	return d
}

func meanFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

var _ http.RoundTripper = (*oracle)(nil)
