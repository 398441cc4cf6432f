package client

import (
	"math"
	"sync/atomic"
	"time"
)

// Constants of least_latency's choice.
const (
	// candidateSharpness sets how strongly candidates are drawn towards the
	// fastest endpoints: an endpoint whose expected latency is r times the
	// best's is drawn with weight e^(-sharpness·(r-1)), so one 10% slower
	// is drawn 0.67 times as often, one 1.5× slower 0.14 times, one twice
	// as slow 0.02 times. Equal endpoints are drawn alike, and the choice
	// between two of them falls to the one with fewer requests in flight.
	candidateSharpness = 4
	// estimateMemory is how long the part of an estimate above the
	// endpoint's best (its latency floor) takes to fade by e when no new
	// answer comes: a queue met once or a spike stops weighing on an
	// endpoint within seconds even if nothing sends to it.
	estimateMemory = time.Second
	// candidateFloor spreads this share of the draws evenly over the
	// pool, so that every endpoint is drawn now and then.
	candidateFloor = 0.01
	// exploreBase is how long an endpoint as fast as the best may go
	// unmeasured before a request is sent to it to measure it again; an
	// endpoint r times slower than the best waits r times as long (capped
	// by the latency decay, WithLatencyDecay), within the exploration
	// budget (exploreShare). A backend that became fast again is thus
	// found within a second or two, while one that stays slow costs an
	// exploratory request every second or so.
	exploreBase = 100 * time.Millisecond
	// exploreMax is the most endpoints one refresh sends an exploratory
	// request to: a new endpoint gets its first request within a refresh
	// or two (tens of milliseconds) under steady load, and a table of
	// thousands of new endpoints is measured gradually, not at once.
	exploreMax = 2
	// exploreShare is the share of a client's requests that may go to
	// measured endpoints to measure them again (a token bucket of at most
	// exploreBurst): with many clients, or many endpoints, exploration
	// stays a small tax on the client's own traffic. New endpoints, and
	// endpoints whose answers are improving, are explored regardless.
	// Among 100 backends of 2–40 ms (BenchmarkRouting's wide), 2% cost
	// 10% on the mean and 8 ms on the p99 in requests to slow backends
	// that had not changed; one exploratory answer is enough to show that
	// a backend became fast, and from then on it is explored regardless.
	exploreShare = 0.005
	exploreBurst = 2
	// maxFront bounds the leaders a refresh keeps (see pickLeastLatency).
	maxFront = 64
	// usualLoadMemory is how many load report max ages
	// (WithLoadReportMaxAge) the usual load of an endpoint keeps weighing
	// on its cost after its latest report is too old to tell its load now:
	// it fades by e over that time.
	usualLoadMemory = 10
	// refreshPerEndpoint stretches the refresh period of large pools so
	// that refreshing costs about 1 µs per endpoint per 10 ms at most.
	refreshPerEndpoint = time.Microsecond
)

// expected returns endpoint i's expected latency for a new request at now
// (ns), and its load (requests in flight, by this client or, when the
// server reports it, in all).
//
//   - Latency: the estimate of recent answers (estimate.go). What it holds
//     above the endpoint's latency floor (its best answers) fades within
//     estimateMemory when nothing new comes.
//   - Load reports (package loadreport): load is this client's requests in
//     flight or the server's reported ones, whichever is more; an older
//     report counts less (halved within loadReportTau, towards the
//     endpoint's usual load) and not at all after maxReportAge. With a
//     reported capacity, the cost is the floor times the queue a fresh
//     report shows (Prequal's hot endpoints: each full round of capacity
//     ahead adds a service time), moving, as the report ages, to the floor
//     times the risk its usual load implies.
//   - Failures multiply the cost by (1 + the failure penalty), which fades
//     within about a second.
//   - An endpoint no request has measured yet, with a request already on
//     its way to it, counts as the failure penalty (Finagle's cold-start
//     rule), so that a slow newcomer cannot take a burst.
//   - While requests wait for an answer, the time since the endpoint last
//     answered one is a lower bound on its latency: a backend that stalls
//     loses traffic before its first slow answer.
func (p *pool) expected(i int, cfg *config, now int64) (cost, load float64) {
	cost, load, _ = p.expectedHot(i, cfg, now)
	return cost, load
}

// expectedHot is expected, and whether the endpoint is hot: its reported
// load has reached its reported capacity, so that a new request would
// queue.
func (p *pool) expectedHot(i int, cfg *config, now int64) (cost, load float64, hot bool) {
	h := p.hot[i]
	if cfg.slowStart == 0 && h.plain() {
		cost, load = h.plainCost(now)
		return cost, load, false
	}
	return p.expectedFull(h, i, cfg, now)
}

// plain reports whether the endpoint is expectedHot's common case: a
// measured endpoint without load reports or failures (in a pool without
// slow start, which the caller checks). Its cost is then plainCost.
func (h *hotState) plain() bool {
	return h.rifAt.Load()|int64(h.penalty.Load()) == 0 && h.estAt.Load() != 0
}

// plainCost is the cost and load of a plain endpoint at now: the latency
// part of the cost, or the age of its oldest request waiting if that is
// more, and the requests in flight. Small enough to be inlined into the
// pick.
func (h *hotState) plainCost(now int64) (cost, load float64) {
	cost = loadFloat(&h.base)
	waiting := h.waiting.Load()
	if waiting > 0 {
		cost = max(cost, float64(now-h.progressAt.Load()))
	}
	return cost, float64(max(h.inflight.Load(), waiting))
}

// expectedFull is expectedHot for any endpoint.
func (p *pool) expectedFull(h *hotState, i int, cfg *config, now int64) (cost, load float64, hot bool) {
	cost = loadFloat(&h.base)
	waiting := h.waiting.Load()
	load = float64(max(h.inflight.Load(), waiting))
	if at := h.rifAt.Load(); at != 0 {
		if age := max(now-at, 0); age < int64(cfg.maxReportAge) {
			fresh := decay(float64(age) / float64(cfg.loadReportTau))
			rif := loadFloat(&h.rif)
			// For choosing among near-equals, an older report counts
			// less: the load estimate moves from it towards the endpoint's
			// usual load (the reports' average), not towards zero, lest
			// every client take a stale report for a free endpoint.
			mean, c := h.loadStats()
			load = max(load, mean+(rif-mean)*fresh)
			if c > 0 {
				// The server says how much it serves at once. A fresh
				// report tells the queue a request would join: the latency
				// of one that does not queue (floor), plus one service time
				// per full round of capacity ahead of it. An older report
				// tells only how busy the endpoint usually is: the chance
				// that a request finds it full, and waits, grows with its
				// usual load over its capacity, and the risk is counted
				// twice. The cost moves from the one to the other as the
				// report ages; a client thus prefers an endpoint it knows
				// to have room to one it merely remembers as fast, which
				// is what keeps independent clients from piling onto the
				// same one (they then queue less often than round robin's).
				floor := loadFloat(&h.floor)
				if floor == 0 {
					floor = loadFloat(&h.est) // not measured yet: the seed
				}
				known := floor * (1 + math.Floor(rif/c))
				usual := usualCost(floor, mean, c)
				cost = fresh*known + (1-fresh)*usual
				hot = fresh > 0.5 && rif >= c
			}
		} else if mean, c := h.loadStats(); c > 0 {
			// Past the max age a report says nothing of the load now,
			// but the endpoint's usual load still says how likely a
			// request is to queue there; that knowledge fades slowly
			// (usualLoadMemory), not at once: clients that all forgot at
			// the same moment that the fast endpoints are usually full
			// would all return to them together.
			w := usualLoadWeight(age, cfg.maxReportAge)
			floor := loadFloat(&h.floor)
			if floor == 0 {
				floor = loadFloat(&h.est)
			}
			usual := usualCost(floor, mean, c)
			cost = w*usual + (1-w)*cost
			load = max(load, w*mean)
		}
	}
	if pen := loadFloat(&h.penalty); pen != 0 {
		cost *= 1 + pen*decay(float64(now-h.penaltyAt.Load())/cfg.penaltyTau)
	}
	if !h.measured() && (waiting > 0 || h.exploring.Load()) {
		cost = max(cost, float64(cfg.failurePenalty))
	}
	if waiting > 0 {
		cost = max(cost, float64(now-h.progressAt.Load()))
	}
	if cfg.slowStart > 0 {
		cost /= p.eps[i].slowStartFactor(now, cfg.slowStart, cfg.slowStartMin)
	}
	return cost, load, hot
}

// expectedOf is expected for an endpoint outside any pool, as shown to
// people, with its latency part computed at now rather than at the last
// refresh.
func expectedOf(cfg *config, ep *endpoint, now int64) float64 {
	if ep.hot.measured() {
		ep.mu.Lock()
		ep.hot.rebase(now)
		ep.mu.Unlock()
	}
	p := pool{eps: []*endpoint{ep}, hot: []*hotState{ep.hot}}
	c, _ := p.expected(0, cfg, now)
	return c
}

// better returns whichever of endpoints a and b (drawn at random) should
// take the request: the lower expected latency, unless the two are within
// the tie band; then the one with fewer requests in flight (the load half
// of Prequal's rule), else either: spreading among near-equals is what
// keeps many clients from herding onto one endpoint.
func (p *pool) better(a, b int, coin bool, cfg *config, now int64) int {
	w, _, _ := p.betterHot(a, b, coin, cfg, now)
	return w
}

// betterHot is better, with the expected latency of the one it returns
// and whether that one is hot.
func (p *pool) betterHot(a, b int, coin bool, cfg *config, now int64) (int, float64, bool) {
	ea, la, ha := p.expectedHot(a, cfg, now)
	eb, lb, hb := p.expectedHot(b, cfg, now)
	if prefers(ea, la, eb, lb, coin, cfg.tieBand) {
		return a, ea, ha
	}
	return b, eb, hb
}

// prefers reports whether candidate a (expected latency ea, load la) is
// better than b: the lower expected latency, unless the two are within
// the tie band; then the one with fewer requests in flight, else the coin.
func prefers(ea, la, eb, lb float64, coin bool, band float64) bool {
	switch {
	case ea > eb*(1+band):
		return false
	case eb > ea*(1+band):
		return true
	case la != lb:
		return la < lb
	}
	return coin
}

// hotDraws bounds the uniform draws a pick makes for a candidate with room
// when the better of its two is full.
const hotDraws = 3

// candidateTries bounds the draws a pick spends looking for candidates
// its request has not tried yet before it scans.
const candidateTries = 4

// pickLeastLatency is least_latency: an endpoint due for exploration if
// there is one; else the better of two candidates, a leader (one of the
// endpoints within the tie band of the lowest expected latency at the last
// refresh, at random) and a challenger drawn towards the fastest; and the
// endpoint whose latest answer showed room (a vacancy, see vacancy.go)
// keeps the request unless that one is better by more than the tie band.
// The draw's weights, the leaders and the exploration list are computed
// off the request path; a pick reads two or three endpoints' hot blocks.
func pickLeastLatency(p *pool, cfg *config, r *pickRequest) *endpoint {
	if r.ntried == 0 && !r.dry {
		if b := p.explore.Load(); b != nil {
			if i := b.take(p); i >= 0 {
				r.explored = true
				return p.eps[i]
			}
		}
	}
	s := p.sampler.Load()
	u := cfg.rand.uint64()
	front := s.front
	lead := int(front[(u>>48)*uint64(len(front))>>16])
	n := len(p.eps)
	if n == 1 || r.ntried > 0 && r.excluded(p.eps[lead]) {
		return p.twoChoices(cfg, r, s)
	}
	for try := 0; try < candidateTries; try++ {
		c := s.challenger(u)
		// The leader and the draw spent all of u's bits. The coins take
		// the top bits of u times an odd constant, each of which depends
		// on all of u's bits, and a second draw takes a full mix of u.
		// (Taken from the leader's own bits, the fallback challenger was
		// always the leader's neighbour in the table: a favourite shared
		// by every client of the service.)
		coins := u * 0x9E3779B97F4A7C15
		if c == lead {
			c = p.otherChallenger(s, u, lead, cfg)
		}
		if r.ntried > 0 && r.excluded(p.eps[c]) {
			u = cfg.rand.uint64()
			continue
		}
		var (
			w  int
			cw float64
		)
		if hl, hc := p.hot[lead], p.hot[c]; cfg.slowStart == 0 && hl.plain() && hc.plain() {
			// Both plain, as most are: expectedHot and betterHot
			// written out, for a third of the pick's cost.
			el, ll := hl.plainCost(r.now)
			ec, lc := hc.plainCost(r.now)
			w, cw = c, ec
			if prefers(el, ll, ec, lc, coins>>63 == 0, cfg.tieBand) {
				w, cw = lead, el
			}
		} else {
			w, cw = p.hotDuel(lead, c, coins, cfg, r)
		}
		if r.ntried == 0 && !r.dry {
			// The endpoint whose answer just showed room, if any: the
			// freshest load this client knows.
			if v := p.takeVacancy(r.now); v >= 0 && v < n && v != w && p.keeps(v, cw, cfg, r.now) {
				w = v
			}
		}
		if !p.claim(w, r) {
			if w == lead || w == c {
				w = lead + c - w // the other one
			} else {
				w = lead
			}
		}
		return p.eps[w]
	}
	return p.eps[lead]
}

// otherChallenger draws a challenger other than lead after the draw for
// the random u landed on it (one of several leaders; a lone one is left
// out of the draw): a second draw from a full mix of u, and if that lands
// on it too, any other endpoint.
func (p *pool) otherChallenger(s *sampler, u uint64, lead int, cfg *config) int {
	c := s.challenger(mix64(u))
	if c == lead {
		c = cfg.rand.n(len(p.eps) - 1)
		if c >= lead {
			c++
		}
	}
	return c
}

// hotDuel returns the better of the leader and the challenger c when they
// are not both plain, and its expected latency. When the better one is
// full, by its server's reports, other candidates drawn uniformly may well
// have room (Prequal's cold replicas come from random probes for this
// reason): up to hotDraws of them, not tried yet, are weighed too.
func (p *pool) hotDuel(lead, c int, coins uint64, cfg *config, r *pickRequest) (int, float64) {
	w, cw, hot := p.betterHot(lead, c, coins>>63 == 0, cfg, r.now)
	n := len(p.eps)
	for k := 0; hot && k < hotDraws && n > 2; k++ {
		if x := cfg.rand.n(n); x != lead && x != c && x != w && !r.excluded(p.eps[x]) {
			w, cw, hot = p.betterHot(w, x, coins&(1<<(62-k)) == 0, cfg, r.now)
		}
	}
	return w, cw
}

// usualCost is the expected latency of a request to an endpoint of
// latency floor whose usual load is mean of capacity c: the chance that
// the request finds it full, and waits, grows with its usual load over
// its capacity, and the risk is counted twice.
func usualCost(floor, mean, c float64) float64 {
	return floor * (1 + mean/c) * (1 + mean/c)
}

// keeps reports whether vacancy v keeps the request rather than yield it
// to the winner of the draw, whose expected latency is cw: unless the
// winner is better by more than the tie band. Among near-equals, the
// endpoint known to have room wins; trading it for one whose load is
// known only from older reports or not at all is how independent clients
// herd.
func (p *pool) keeps(v int, cw float64, cfg *config, now int64) bool {
	cv, _, _ := p.expectedHot(v, cfg, now)
	return cv <= cw*(1+cfg.tieBand)
}

// claim lets a request go to endpoint i: an endpoint no request has
// measured yet takes one request at a time (its first answer tells what
// it is worth), so that picks made at the same moment cannot send a burst
// to a slow newcomer.
func (p *pool) claim(i int, r *pickRequest) bool {
	h := p.hot[i]
	if h.measured() || r.dry {
		return true
	}
	return h.waiting.Load() == 0 && h.exploring.CompareAndSwap(false, true)
}

// pickP2C is p2c: the better of two endpoints drawn uniformly.
func pickP2C(p *pool, cfg *config, r *pickRequest) *endpoint {
	return p.twoChoices(cfg, r, nil)
}

// twoChoices draws two distinct candidates that r has not tried, from s
// (uniformly when s is nil), and returns the better; when draws keep
// finding tried endpoints it scans for the cheapest untried one.
func (p *pool) twoChoices(cfg *config, r *pickRequest, s *sampler) *endpoint {
	n := len(p.eps)
	if n == 1 {
		if r.excluded(p.eps[0]) {
			return nil
		}
		return p.eps[0]
	}
	a, b := -1, -1
	for try := 0; try < 2*candidateTries && b < 0; try++ {
		var i int
		if s != nil && try < candidateTries {
			i = s.drawBits(cfg.rand.uint64())
		} else {
			i = cfg.rand.n(n) // uniform, or the weighted draw keeps finding the same
		}
		if i == a || (r.ntried > 0 && r.excluded(p.eps[i])) {
			continue
		}
		if a < 0 {
			a = i
		} else {
			b = i
		}
	}
	switch {
	case a < 0:
		return p.cheapest(cfg, r)
	case b < 0:
		return p.eps[a]
	}
	return p.eps[p.better(a, b, cfg.rand.uint64()&1 == 0, cfg, r.now)]
}

// cheapest returns the untried endpoint of lowest expected latency, or nil.
// It scans the pool: only retries that tried most of a pool come here.
func (p *pool) cheapest(cfg *config, r *pickRequest) *endpoint {
	best, bestCost := -1, math.Inf(1)
	for i, ep := range p.eps {
		if r.excluded(ep) {
			continue
		}
		if c, _ := p.expected(i, cfg, r.now); c < bestCost || best < 0 {
			best, bestCost = i, c
		}
	}
	if best < 0 {
		return nil
	}
	return p.eps[best]
}

// pickLeastRequest is least_request: of two endpoints drawn uniformly, the
// one with fewer requests in flight (by this client, or all of them when
// the server reports it), as Envoy's and gRPC's least_request.
func pickLeastRequest(p *pool, cfg *config, r *pickRequest) *endpoint {
	n := len(p.eps)
	if n == 1 {
		if r.excluded(p.eps[0]) {
			return nil
		}
		return p.eps[0]
	}
	for try := 0; try < candidateTries; try++ {
		i := cfg.rand.n(n)
		j := cfg.rand.n(n - 1)
		if j >= i {
			j++
		}
		ei, ej := r.excluded(p.eps[i]), r.excluded(p.eps[j])
		switch {
		case ei && ej:
			continue
		case ei:
			return p.eps[j]
		case ej:
			return p.eps[i]
		}
		_, li := p.expected(i, cfg, r.now)
		_, lj := p.expected(j, cfg, r.now)
		if cfg.slowStart > 0 {
			li = (li + 1) / p.eps[i].slowStartFactor(r.now, cfg.slowStart, cfg.slowStartMin)
			lj = (lj + 1) / p.eps[j].slowStartFactor(r.now, cfg.slowStart, cfg.slowStartMin)
		}
		if lj < li {
			return p.eps[j]
		}
		return p.eps[i]
	}
	return p.cheapest(cfg, r)
}

// refresh recomputes the pool's candidate weights and exploration list at
// now (least_latency only). It runs off the request path, from the table's
// coarse clock, and at every rebuild.
// budget is how many measured endpoints may be explored again (each takes
// one and it is decremented); unmeasured and improving endpoints are
// explored regardless.
func (p *pool) refresh(cfg *config, now int64, budget *float64) {
	n := len(p.eps)
	if n == 0 {
		return
	}
	costs := make([]float64, n)
	hot := make([]bool, n)
	best := math.Inf(1)
	for i, h := range p.hot {
		if h.measured() {
			ep := p.eps[i]
			ep.mu.Lock()
			h.rebase(now) // the fading of spikes and queues, every refresh
			ep.mu.Unlock()
		}
	}
	for i := range p.eps {
		costs[i], _, hot[i] = p.expectedHot(i, cfg, now)
		best = min(best, costs[i])
	}
	var front []int32
	for i, c := range costs {
		if c <= best*(1+cfg.tieBand) {
			if len(front) == maxFront {
				// Reservoir sampling: a uniform subset of a large front.
				if k := cfg.rand.n(i + 1); k < maxFront {
					front[k] = int32(i)
				}
				continue
			}
			front = append(front, int32(i))
		}
	}
	// Exploration: unmeasured endpoints first, then the stalest for
	// their slowness.
	// Both scans start at a random place, and each interval is stretched
	// by a random factor of this client's own: independent clients that
	// started together, and see the same endpoints alike, must not
	// explore the same endpoint at the same moment (8 clients exploring
	// one backend of capacity 2 queue it four deep).
	var due []int32
	start := cfg.rand.n(n)
	for k := range n {
		if len(due) == exploreMax {
			break
		}
		i := (start + k) % n
		if h := p.hot[i]; !h.measured() && h.waiting.Load() == 0 && !h.exploring.Load() {
			due = append(due, int32(i))
		}
	}
	for k := range n {
		if len(due) == exploreMax {
			break
		}
		i := (start + k) % n
		h := p.hot[i]
		if !h.measured() || h.waiting.Load() > 0 || h.exploring.Load() || hot[i] || h.busy(now, cfg.maxReportAge) {
			continue
		}
		if h.improving.Load() {
			due = append(due, int32(i))
			continue
		}
		if h.unconfirmed.Load() && *budget >= 1 {
			// Measured by one answer only: once more, within the budget
			// (see hotState.observe).
			due = append(due, int32(i))
			*budget--
			continue
		}
		at := h.estAt.Load()
		ratio := costs[i] / best
		interval := min(float64(exploreBase)*ratio, float64(cfg.decay)) * exploreJitter(cfg.salt, i, at)
		if *budget >= 1 && float64(now-at) > interval {
			due = append(due, int32(i))
			*budget--
		}
	}
	w := costs // reused: each weight replaces its cost
	floor := candidateFloor / float64(n)
	for i, c := range costs {
		w[i] = math.Exp(-candidateSharpness*(c/best-1)) + floor
	}
	if len(front) == 1 && n > 1 {
		// A lone leader is never its own challenger: leaving it out of
		// the draw spares most picks a second draw when it is far ahead
		// (and so would be drawn most of the time).
		w[front[0]] = 0
	}
	sm := newSampler(w).withChallengerSet(cfg.rand)
	sm.front = front
	p.sampler.Store(sm)
	if len(due) > 0 {
		p.explore.Store(&exploreBatch{idx: due})
	} else if p.explore.Load() != nil {
		p.explore.Store(nil)
	}
}

// exploreJitter returns a factor in [0.5, 1.5) that stretches endpoint i's
// exploration interval: fixed for one pool of one client between two
// samples of the endpoint (at is when the latest came), different from one
// client to the next and from one round of exploration to the next.
func exploreJitter(salt uint64, i int, at int64) float64 {
	x := salt ^ uint64(i)*0x9E3779B97F4A7C15 ^ uint64(at)*0xbf58476d1ce4e5b9
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	x ^= x >> 29
	return 0.5 + float64(x>>11)/(1<<53)
}

// exploreBatch is the endpoints (indexes into a pool) that one refresh
// found due for an exploratory request; picks take them one by one.
type exploreBatch struct {
	idx  []int32
	next atomic.Int32
}

// take returns the next endpoint to explore, or -1. An endpoint already
// waiting on a request, or being explored, is skipped: one exploratory
// request at a time, never a burst.
func (b *exploreBatch) take(p *pool) int {
	for int(b.next.Load()) < len(b.idx) {
		k := int(b.next.Add(1)) - 1
		if k >= len(b.idx) {
			break
		}
		i := int(b.idx[k])
		h := p.hot[i]
		if h.waiting.Load() == 0 && h.exploring.CompareAndSwap(false, true) {
			return i
		}
	}
	return -1
}
