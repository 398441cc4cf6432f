package client

import (
	"math"
	"sync/atomic"
	"time"
)

// Constants of the latency estimate and the failure penalty.
const (
	// estimateGainUp and estimateGainDown are the weights of one sample
	// in the estimate, on a log scale: est ← est·(sample/est)^gain. A
	// slower answer counts for more than a faster one (quick to punish),
	// yet a single 3× spike raises the estimate by 1.7× only, and two
	// answers at the old speed bring it back within 25%: one outlier
	// never dominates for longer than a few of the endpoint's requests.
	// On a log scale a 10× spike and a 10× improvement move the estimate
	// by the same factor, which an arithmetic mean does not.
	estimateGainUp   = 0.5
	estimateGainDown = 0.4
	// improvingShare: a sample under this share of the estimate marks the
	// endpoint as improving, and least_latency measures it again at the
	// next refresh rather than after its exploration interval. A backend
	// that became fast is thus measured a few times within tens of
	// milliseconds of its first fast answer and takes its share.
	improvingShare = 0.7
	// floorGainDown and floorGainUp move the latency floor towards a
	// faster sample quickly and towards a slower one slowly: it settles
	// near the 10th percentile of the samples, the answers that did not
	// queue.
	floorGainDown = 0.5
	floorGainUp   = 0.05
	// rifMeanGain is the weight of one load report in the moving average
	// of an endpoint's reported requests in flight, which stands for the
	// endpoint's load once its latest report is old: about the last ten
	// reports.
	rifMeanGain = 0.1
	// failureStep is what one failure adds to an endpoint's penalty: its
	// cost is multiplied by (1 + penalty). One failure makes an endpoint
	// five times as expensive as its latency says; the penalty then decays
	// with the time constant failurePenalty/failureDecays, so that one
	// failure costs about failurePenalty of traffic (1 s by default),
	// whereas failure after failure keeps the endpoint out.
	failureStep = 4
	// failureDecays is how many time constants of decay bring one
	// failure's penalty to 10% of the cost (4·decay(4.1) ≈ 0.1).
	failureDecays = 4.1
	// maxPenalty caps the penalty so that an endpoint that failed for a
	// long time recovers within a few failure penalties once it answers
	// again (e^-ln(1001)·… ≈ 7 time constants).
	maxPenalty = 1000
)

// hotState is what one pick needs to know of one endpoint, in one 128-byte
// block the size class of which aligns it to cache lines: a candidate costs
// two adjacent lines, no pointer chase. Counters that every request writes
// (inflight, waiting) share it with what only samples write, since a pick
// reads them all anyway.
//
// Times are coarse-clock nanoseconds (see coarseClock).
type hotState struct {
	// inflight is this client's requests to the endpoint that are not
	// finished (for HTTP, until the body is closed); waiting those without
	// an answer yet (for HTTP, without response headers). gRPC streams are
	// in neither: their length says nothing of the endpoint's speed.
	inflight atomic.Int64
	waiting  atomic.Int64
	// progressAt is when a waiting request last got its answer, or when
	// waiting went from 0 to 1. While waiting > 0, now - progressAt is a
	// lower bound on the age of the oldest request waiting (nothing
	// answered since), and so on the endpoint's latency: a backend that
	// stalls is noticed before its first slow answer.
	progressAt atomic.Int64

	// est is the latency estimate (float64 ns) and estAt when its last
	// sample came (0: no request measured it; est is then a seed from the
	// probe RTT or the default RTT). floor follows the fast end of the
	// samples, the latency of a request that did not queue: with a
	// capacity reported, the cost is floor × the queue the reported load
	// implies, rather than est, which already holds past queues.
	est   atomic.Uint64
	estAt atomic.Int64
	floor atomic.Uint64

	// penalty (float64) is the failure penalty at penaltyAt; it decays
	// with time (see failureStep).
	penalty   atomic.Uint64
	penaltyAt atomic.Int64

	// rif (float64) is the requests in flight the server reported at
	// rifAt (0: never); rifStats holds their moving average and the
	// capacity the server said it serves without queueing (0: not
	// reported), as two float32 (see loadStats).
	rif      atomic.Uint64
	rifStats atomic.Uint64
	rifAt    atomic.Int64

	// base is the latency part of the cost (float64 ns): the estimate,
	// what it holds above the floor faded by its age and counted once
	// more (see latencyCost). It is computed when a sample comes and by
	// the table's refresh, so that a pick reads it rather than computing
	// it: two divisions per candidate were a third of a pick.
	base atomic.Uint64

	// timedAt is when the latest precisely timed gRPC request started
	// (coarse clock), timedStart its precise time while it is out (0 when
	// none is, -1 while one is being claimed; see grpcPicker): timing is
	// sampled at high request rates.
	timedAt    atomic.Int64
	timedStart atomic.Int64

	// exploring is set while an exploratory request is out, so that one
	// at a time goes; improving while the latest samples came in well
	// under the estimate, so that exploration follows up at once (see
	// pool.refresh).
	exploring atomic.Bool
	improving atomic.Bool
	// unconfirmed is set while one answer only has measured the endpoint.
	unconfirmed atomic.Bool

	_ [128 - 14*8 - 3*4]byte
}

func loadFloat(a *atomic.Uint64) float64     { return math.Float64frombits(a.Load()) }
func storeFloat(a *atomic.Uint64, v float64) { a.Store(math.Float64bits(v)) }

// measured reports whether a request has measured the endpoint.
func (h *hotState) measured() bool { return h.estAt.Load() != 0 }

// seed sets the estimate of an endpoint no request has measured yet (from
// its probe RTT or the default RTT); once a request measured it, a seed is
// ignored.
func (h *hotState) seed(rtt time.Duration) {
	if !h.measured() {
		storeFloat(&h.est, float64(rtt))
		storeFloat(&h.base, float64(rtt))
	}
}

// observe folds one latency sample taken at now into the estimate. Callers
// serialize observe per endpoint (endpoint.mu).
func (h *hotState) observe(sample time.Duration, now int64) {
	s := max(float64(sample), 1)
	if !h.measured() {
		// The first real sample replaces the seed, a guess. One answer is
		// not a lesson, though: it may have met a stall of the client's
		// own machine, and an endpoint judged slow is measured again only
		// after an interval that grows with how slow it looks. Marked
		// unconfirmed, it is measured once more as soon as the exploration
		// budget allows (pool.refresh); the second answer then says
		// whether to follow up at once (improving).
		storeFloat(&h.est, s)
		storeFloat(&h.floor, s)
		h.unconfirmed.Store(true)
	} else {
		if h.unconfirmed.Load() {
			h.unconfirmed.Store(false)
		}
		f := loadFloat(&h.floor)
		fgain := floorGainUp
		if s < f {
			fgain = floorGainDown
		}
		storeFloat(&h.floor, f*math.Pow(s/f, fgain))
		est := loadFloat(&h.est)
		gain := estimateGainDown
		if s > est {
			gain = estimateGainUp
		}
		storeFloat(&h.est, est*math.Pow(s/est, gain))
		if improving := s < est*improvingShare; improving != h.improving.Load() {
			h.improving.Store(improving)
		}
	}
	h.estAt.Store(max(now, 1))
	h.rebase(now)
}

// observeAtLeast folds in a sample that is a lower bound on the latency (a
// request that ran out of time after d): it raises the estimate when d is
// above it and otherwise says nothing.
func (h *hotState) observeAtLeast(d time.Duration, now int64) {
	if !h.measured() || float64(d) > loadFloat(&h.est) {
		h.observe(d, now)
	}
}

// penaltyNow returns the failure penalty at now.
func (h *hotState) penaltyNow(now int64, tau float64) float64 {
	p := loadFloat(&h.penalty)
	if p == 0 {
		return 0
	}
	return p * decay(float64(now-h.penaltyAt.Load())/tau)
}

// fail adds one failure's penalty at now. Callers serialize it with
// observe.
func (h *hotState) fail(now int64, tau float64) {
	storeFloat(&h.penalty, min(h.penaltyNow(now, tau)+failureStep, maxPenalty))
	h.penaltyAt.Store(now)
}

// succeed lets a success at now clear a penalty that has faded.
func (h *hotState) succeed(now int64, tau float64) {
	if p := loadFloat(&h.penalty); p != 0 && h.penaltyNow(now, tau) < 0.01 {
		storeFloat(&h.penalty, 0)
	}
}

// report records a server's load report received at now. Callers
// serialize it per endpoint (endpoint.mu).
//
// The usual load follows the reports with a weight that grows with the
// time since the previous one: about the last ten reports of a busy
// client, but a report after a pause of tau counts for 63%, so that a
// backend that was briefly overloaded is not remembered as busy for as
// many reports as it took to forget it.
func (h *hotState) report(rif, capacity float64, now int64, tau time.Duration) {
	mean := rif
	if at := h.rifAt.Load(); at != 0 {
		m, _ := h.loadStats()
		g := rifMeanGain
		if tau > 0 && now > at {
			g = max(g, 1-math.Exp(-float64(now-at)/float64(tau)))
		}
		mean = m + g*(rif-m)
	}
	storeFloat(&h.rif, rif)
	h.rifStats.Store(uint64(math.Float32bits(float32(mean)))<<32 | uint64(math.Float32bits(float32(capacity))))
	h.rifAt.Store(max(now, 1))
}

// loadStats returns the moving average of the reported requests in flight
// and the reported capacity.
func (h *hotState) loadStats() (mean, capacity float64) {
	v := h.rifStats.Load()
	return float64(math.Float32frombits(uint32(v >> 32))), float64(math.Float32frombits(uint32(v)))
}

// busy reports whether the endpoint's reports say it is usually at least
// half full: an exploratory request is likely to queue there. Past maxAge
// the usual load fades as it does in the cost.
func (h *hotState) busy(now int64, maxAge time.Duration) bool {
	at := h.rifAt.Load()
	if at == 0 {
		return false
	}
	mean, c := h.loadStats()
	if age := now - at; age >= int64(maxAge) {
		mean *= usualLoadWeight(age, maxAge)
	}
	return c > 0 && mean >= c/2
}

// usualLoadWeight is how much an endpoint's usual load still weighs when
// its latest report is age old, past maxAge: it fades by e over
// usualLoadMemory max ages. The cost and exploration's busy test share it.
func usualLoadWeight(age int64, maxAge time.Duration) float64 {
	return decay(float64(age-int64(maxAge)) / float64(usualLoadMemory*maxAge))
}

// latencyCost returns the latency part of the cost at now: the estimate,
// with what it holds above the endpoint's latency floor (its best answers)
// faded by its age (estimateMemory).
//
// The spread above the floor is counted once, as the estimate holds it.
// It used to be counted twice (est²/floor), to make the choice averse to
// tails and keep clients off the endpoint they all find fastest. That
// cost the fastest endpoint its traffic whenever its own answers
// jittered: the endpoint a client sends most to shows the most spread
// (one measured once shows none), and at the top of a busy machine's
// jitter a 2–3.7 ms endpoint came within the tie band of a 5 ms one,
// where the one with fewer requests in flight wins. Measured in 10
// interleaved rounds of the routing benchmarks, counting it once is as
// good or better everywhere (wide 1.26 → 1.17× the oracle's mean,
// quickstart 1.11 → 1.05×, shift 1.08 → 1.04×; capacity's p99 unchanged);
// vacancies and load reports now do what the second count was for.
func (h *hotState) latencyCost(now int64) float64 {
	cost := loadFloat(&h.est)
	f := loadFloat(&h.floor)
	if f <= 0 || cost <= f {
		return cost
	}
	// What the latest answers said above the endpoint's best fades as
	// they age: a queue met once, or a spike, says less and less of the
	// next request.
	return f + (cost-f)*decay(float64(max(now-h.estAt.Load(), 0))/float64(estimateMemory))
}

// rebase recomputes base at now.
func (h *hotState) rebase(now int64) { storeFloat(&h.base, h.latencyCost(now)) }

// start records a request sent at now that waits for its answer.
func (h *hotState) start(now int64) {
	h.inflight.Add(1)
	if h.waiting.Add(1) == 1 {
		h.progressAt.Store(now)
	}
}

// answered records that a waiting request got its answer (or failed) at
// now.
func (h *hotState) answered(now int64) {
	if h.progressAt.Load() != now {
		// Many answers share a coarse tick: a store each would take the
		// line from the cores that read it on every pick.
		h.progressAt.Store(now)
	}
	h.waiting.Add(-1)
	if h.exploring.Load() {
		h.exploring.Store(false)
	}
}

// load returns the client's own requests to the endpoint that are not
// finished.
func (h *hotState) load() int64 { return max(h.inflight.Load(), h.waiting.Load()) }

// decay approximates exp(-x) for x >= 0 by the reciprocal of its Taylor
// polynomial of degree 4: within 0.5% for x < 1 and always decreasing, which
// is all a cost ranking needs, at a fraction of math.Exp's price.
func decay(x float64) float64 {
	return 1 / (1 + x*(1+x*(0.5+x*(1.0/6+x*(1.0/24)))))
}
