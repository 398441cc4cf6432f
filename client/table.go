package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

type snapshotPointer = atomic.Pointer[snapshot]

// table is the endpoint table: the resolver's set joined with the prober's
// health and RTT and the passive figures of real requests. Writers (the
// resolver, the prober, request outcomes that eject) take mu and publish a
// new snapshot; the pick path only loads the snapshot.
type table struct {
	cfg *config
	m   *clientMetrics

	snap snapshotPointer

	// clock is the pick path's coarse clock; it also drives refresh.
	clock *coarseClock
	// refreshedAt is when the pools were last refreshed; requestsSeen the
	// requests counted then; exploreTokens the exploration budget
	// (exploreShare). Clock goroutine only.
	refreshedAt   int64
	requestsSeen  uint64
	exploreTokens float64

	mu        sync.Mutex
	endpoints map[string]*endpoint
	sorted    []*endpoint
	// updates counts the resolver states applied: the stamp that marks
	// the endpoints the latest one listed (endpoint.listed).
	updates uint64
	// ring is the consistent-hash ring over sorted, rebuilt when
	// membership or weights change (consistent_hash only).
	ring    []ringEntry
	ejected int // endpoints currently ejected
	// emptySince is when the resolver started to deliver an empty set
	// while the table held endpoints (0 when not holding): see
	// WithEmptySetGrace.
	emptySince int64
	resolved   bool  // a resolver state arrived
	lastErr    error // the resolver's latest error, nil after a good state
	// slowStartStep is when the weighted schedule is next refreshed for
	// slow start.
	slowStartStep int64

	// onMembership is called with the address list after the set
	// changed, to retarget the prober: without mu held, one call at a
	// time (memberMu), each with the list of its moment, so that the last
	// call carries the latest list whichever goroutine changed it.
	onMembership func(addrs []string)
	memberMu     sync.Mutex

	// onRebuild, if set, is called (under mu; it must not block) after
	// every new snapshot.
	onRebuild func()
	// rebuiltAt is when the last snapshot was built; dirty is set when a
	// rebuild was put off (rebuildSoonLocked).
	rebuiltAt int64
	dirty     bool

	methods methodKinds // the gRPC picker's streaming methods

	ov tableOverload // overload protection (overload.go)

	wake  chan struct{} // nudges run to recompute its timer
	ready chan struct{} // closed once the first resolver state arrived
}

func newTable(cfg *config, m *clientMetrics) *table {
	t := &table{
		cfg:       cfg,
		m:         m,
		endpoints: make(map[string]*endpoint),
		wake:      make(chan struct{}, 1),
		ready:     make(chan struct{}),
		// A full bucket: a new client can confirm its first answers
		// before it has sent the requests that would earn the tokens.
		exploreTokens: exploreBurst,
	}
	t.clock = newCoarseClock(cfg.now, t.refresh)
	t.snap.Store(buildSnapshot(cfg, nil, nil, cfg.now()))
	return t
}

// refresh recomputes the pools' candidate weights and exploration lists
// (least_latency), from the clock goroutine every refreshTicks; a pool of
// n endpoints is refreshed at most every n·refreshPerEndpoint.
func (t *table) refresh(now int64) {
	if t.cfg.policy != LeastLatency {
		return
	}
	s := t.snapshot()
	n := len(s.all)
	if now-t.refreshedAt < int64(n)*int64(refreshPerEndpoint) {
		return
	}
	t.refreshedAt = now
	var requests uint64
	for _, ep := range s.all {
		requests += ep.requests.Load()
	}
	if requests > t.requestsSeen {
		t.exploreTokens = min(t.exploreTokens+exploreShare*float64(requests-t.requestsSeen), exploreBurst)
	}
	t.requestsSeen = requests
	for _, p := range s.pools() {
		p.refresh(t.cfg, now, &t.exploreTokens)
	}
}

func (t *table) snapshot() *snapshot { return t.snap.Load() }

// update applies a resolver state: endpoints added, changed and removed.
// Endpoints that stay keep their state.
func (t *table) update(st resolver.State) {
	now := t.cfg.now()
	t.mu.Lock()
	t.lastErr = st.Err
	if st.Err != nil {
		// Resolvers keep their last good set on errors, and so do we.
		t.m.resolverErrors.Inc()
	}
	var addrs []string
	switch {
	case st.Err != nil && t.resolved:
	case len(st.Endpoints) == 0 && len(t.sorted) > 0 && t.cfg.emptyGrace > 0 && (t.emptySince == 0 || now-t.emptySince < int64(t.cfg.emptyGrace)):
		// Every endpoint vanished at once: more often etcd coming back
		// from an outage with the leases expired, moments before the
		// instances register again, than a service really gone. Keep
		// routing on the last set for the grace period (run applies the
		// empty set when it ends).
		if t.emptySince == 0 {
			t.emptySince = now
			t.cfg.logger.Warn("client: the resolver delivered an empty set; keeping the last one for the grace period",
				"endpoints", len(t.sorted), "grace", t.cfg.emptyGrace)
			t.wakeLocked()
		}
	default:
		t.emptySince = 0
		addrs = t.applyLocked(st.Endpoints, now)
	}
	if !t.resolved {
		t.resolved = true
		close(t.ready)
	}
	t.mu.Unlock()
	if addrs != nil {
		t.publishMembership()
	}
}

// applyLocked merges a resolver set into the table. It returns the new
// address list when membership changed, nil otherwise.
func (t *table) applyLocked(eps []resolver.Endpoint, now int64) []string {
	t.updates++
	stamp := t.updates
	slab := newEndpointSlab(len(eps) - len(t.endpoints))
	changed, membership, reweighted := false, false, false
	for _, e := range eps {
		ep, ok := t.endpoints[e.Addr]
		if ok && ep.listed == stamp {
			continue // a resolver should not repeat an address; keep the first
		}
		if !ok {
			ep = slab.newEndpoint(e, now)
			ep.listed = stamp
			ep.hot.seed(t.cfg.defaultRTT)
			t.addEndpointLocked(ep)
			t.endpoints[e.Addr] = ep
			changed, membership = true, true
			continue
		}
		ep.listed = stamp
		if old := ep.attrs.Load(); !old.Equal(e) || old.Origin != e.Origin {
			if old.Weight != e.Weight {
				reweighted = true // the ring's points follow weights
			}
			e := e
			ep.attrs.Store(&e)
			changed = true
		}
	}
	for addr, ep := range t.endpoints {
		if ep.listed != stamp {
			delete(t.endpoints, addr)
			ep.removed.Store(true)
			// t.ejected counts ejectedUntil != 0, expired or not.
			if ep.ejectedUntil.Swap(0) != 0 {
				t.ejected--
			}
			ep.closeIdleIfUnused()
			t.removeEndpointLocked(ep)
			t.m.forget(addr)
			changed, membership = true, true
		}
	}
	if !changed && t.sorted != nil {
		return nil
	}
	if membership || t.sorted == nil {
		t.sorted = make([]*endpoint, 0, len(t.endpoints))
		for _, ep := range t.endpoints {
			t.sorted = append(t.sorted, ep)
		}
		slices.SortFunc(t.sorted, func(a, b *endpoint) int { return strings.Compare(a.addr, b.addr) })
		for i, ep := range t.sorted {
			ep.pos = i
		}
	}
	if t.cfg.policy == ConsistentHash && (membership || reweighted || t.ring == nil) {
		t.ring = buildRing(t.sorted, t.cfg.ringReplicas)
	}
	t.rebuildLocked(now)
	if !membership {
		return nil
	}
	addrs := make([]string, len(t.sorted))
	for i, ep := range t.sorted {
		addrs[i] = ep.addr
	}
	return addrs
}

// rebuildMinInterval spaces the rebuilds that bursts of small changes ask
// for (rebuildSoonLocked).
const rebuildMinInterval = time.Millisecond

// rebuildSoonLocked rebuilds now, or within rebuildMinInterval when the
// last rebuild is more recent: a burst of changes costs one rebuild per
// interval, not one per change.
func (t *table) rebuildSoonLocked(now int64) {
	if now-t.rebuiltAt >= int64(rebuildMinInterval) {
		t.rebuildLocked(now)
		return
	}
	t.dirty = true
	t.wakeLocked()
}

// rebuildLocked publishes a new snapshot of the current table.
func (t *table) rebuildLocked(now int64) {
	t.rebuiltAt, t.dirty = now, false
	s := buildSnapshot(t.cfg, t.sorted, t.ring, now)
	t.snap.Store(s)
	t.m.observeSnapshot(s, now)
	if t.onRebuild != nil {
		t.onRebuild()
	}
	t.wakeLocked()
}

// wakeLocked nudges run to recompute its timer.
func (t *table) wakeLocked() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// holding reports whether the table keeps its last set through the
// empty-set grace.
func (t *table) holding() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.emptySince != 0
}

// endHoldLocked applies the empty set once the grace period of an empty
// resolver set ran out. It returns the new (empty) address list when it
// did, and the time it is due otherwise (0 when not holding).
func (t *table) endHoldLocked(now int64) (addrs []string, due int64) {
	if t.emptySince == 0 {
		return nil, 0
	}
	if due := t.emptySince + int64(t.cfg.emptyGrace); now < due {
		return nil, due
	}
	t.emptySince = 0
	t.cfg.logger.Warn("client: the resolver's set stayed empty for the grace period; dropping the last endpoints", "endpoints", len(t.sorted))
	if addrs := t.applyLocked(nil, now); addrs != nil {
		return addrs, 0
	}
	return []string{}, 0
}

// onProbe applies one probe result: health changes rebuild the snapshot;
// RTTs seed the latency estimate of endpoints no request has measured yet.
func (t *table) onProbe(ev probe.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ep, ok := t.endpoints[ev.Addr]
	if !ok {
		return
	}
	now := t.cfg.now()
	if ev.RTT > 0 {
		ep.probeRTT.Store(int64(ev.RTT))
		ep.hot.seed(ev.RTT)
	}
	if !ev.Load.IsZero() && ev.Load.HasRIF() {
		// The report's age, on the table's clock; a request's answer may
		// have brought a newer one already.
		if at := now - int64(time.Since(ev.Load.Received)); at > ep.hot.rifAt.Load() {
			t.recordLoad(ep, ev.Load, at)
		}
	}
	if ev.LastErr != nil {
		msg := ev.LastErr.Error()
		ep.probeErr.Store(&msg)
	} else {
		ep.probeErr.Store(nil)
	}
	old := probe.Health(ep.health.Swap(int32(ev.Health)))
	if old == ev.Health {
		return
	}
	if old == probe.Unhealthy && ev.Health == probe.Healthy {
		ep.activeSince.Store(now) // back from ill health: slow start again
		if ep.ejectedUntil.Load() != 0 {
			// The probe saw it go down and come back: whatever ejected it
			// is over (Envoy's successful_active_health_check_uneject_host,
			// on a recovery rather than on every success, so that a TCP
			// check cannot undo the ejection of an endpoint answering 5xx).
			ep.ejectedUntil.Store(0)
			ep.lastUnejected.Store(now)
			t.ejected--
			t.cfg.logger.Info("client: endpoint returns from ejection: health checks recovered", "endpoint", ep.addr)
		}
	}
	t.rebuildLocked(now)
}

// outcome is what became of one attempt.
type outcome int

const (
	outcomeSuccess outcome = iota
	outcomeFailure         // connection error, timeout, 5xx: counts against the endpoint
	outcomeNeutral         // cancelled by the caller: says nothing of the endpoint
	// outcomeBusy is a refusal to protect itself (429, 503, gRPC
	// ResourceExhausted): busy, not broken. It adds the short failure
	// penalty, so that the next requests go elsewhere for a moment, but
	// outlier detection does not count it: ejecting a shedding server
	// moves its load onto the others.
	outcomeBusy
)

// observe records the passive figures of one finished attempt at now and
// runs outlier detection. sample is its latency when it was timed (0
// otherwise): a success's sample feeds the estimate; a failure's is a
// lower bound (a request that timed out after d took at least d), and a
// failure adds a short-lived penalty kept apart from the estimate.
func (t *table) observe(ep *endpoint, o outcome, sample time.Duration, now int64) {
	ep.requests.Add(1)
	h := ep.hot
	switch o {
	case outcomeSuccess:
		if sample > 0 || loadFloat(&h.penalty) != 0 {
			ep.mu.Lock()
			if sample > 0 {
				h.observe(sample, now)
			}
			h.succeed(now, t.cfg.penaltyTau)
			ep.mu.Unlock()
		}
		if _, c := h.loadStats(); c == 0 && sample > 0 && float64(sample) <= unqueuedSlack*loadFloat(&h.floor) {
			t.markVacant(ep, now)
		}
		if ep.consecutiveFailures.Load() != 0 {
			ep.consecutiveFailures.Store(0)
		}
	case outcomeFailure:
		ep.failures.Add(1)
		ep.mu.Lock()
		h.fail(now, t.cfg.penaltyTau)
		if sample > 0 {
			h.observeAtLeast(sample, now)
		}
		ep.mu.Unlock()
		n := ep.consecutiveFailures.Add(1)
		if !t.cfg.outlier.Disabled && int(n) >= t.cfg.outlier.ConsecutiveFailures {
			t.maybeEject(ep, int(n), now)
		}
	case outcomeBusy:
		ep.busy.Add(1)
		ep.mu.Lock()
		h.fail(now, t.cfg.penaltyTau)
		ep.mu.Unlock()
	}
}

// maybeEject ejects ep unless that would put more than the allowed share of
// the table out, or it is out already.
func (t *table) maybeEject(ep *endpoint, failures int, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ep.removed.Load() || ep.ejectedUntil.Load() != 0 {
		// Out already, or its ejection just ended and run has not swept
		// it yet: ejecting it again would count it twice.
		return
	}
	if t.ejected >= t.cfg.outlier.maxEjected(len(t.sorted)) {
		return
	}
	if last := ep.lastUnejected.Load(); last != 0 && now-last > int64(t.cfg.outlier.MaxEjectionTime) {
		ep.ejections.Store(0) // healthy for long: forget earlier ejections
	}
	n := ep.ejections.Add(1)
	d := t.cfg.outlier.ejectionTime(n)
	ep.ejectedUntil.Store(now + int64(d))
	reason := fmt.Sprintf("%d consecutive failures (ejection %d, for %v)", failures, n, d)
	ep.ejectReason.Store(&reason)
	ep.consecutiveFailures.Store(0)
	t.ejected++
	t.m.ejections.Inc()
	t.cfg.logger.Warn("client: endpoint ejected", "endpoint", ep.addr, "failures", failures, "for", d)
	t.rebuildLocked(now)
}

// expireLocked returns ejected endpoints whose time is up and reports the
// next moment something time-driven changes (an ejection ends, or a slow
// start step), or 0 for none.
func (t *table) expireLocked(now int64) (next int64) {
	changed := false
	for _, ep := range t.sorted {
		until := ep.ejectedUntil.Load()
		if until == 0 {
			continue
		}
		if now >= until {
			ep.ejectedUntil.Store(0)
			ep.lastUnejected.Store(now)
			ep.activeSince.Store(now) // back from ejection: slow start again
			t.ejected--
			changed = true
			t.cfg.logger.Info("client: endpoint returns from ejection", "endpoint", ep.addr)
			continue
		}
		if next == 0 || until < next {
			next = until
		}
	}
	if t.syncBreakersLocked(now, &next) {
		changed = true
	}
	if t.cfg.slowStart > 0 && t.cfg.policy == WeightedRoundRobin {
		// The schedule holds slow-start weights: refresh it in ten steps
		// over the window while an endpoint is starting.
		starting := false
		for _, ep := range t.sorted {
			if now-ep.activeSince.Load() < int64(t.cfg.slowStart) {
				starting = true
				break
			}
		}
		if starting {
			if now >= t.slowStartStep {
				changed = true
				t.slowStartStep = now + int64(t.cfg.slowStart/10)
			}
			if next == 0 || t.slowStartStep < next {
				next = t.slowStartStep
			}
		}
	}
	if t.dirty {
		if due := t.rebuiltAt + int64(rebuildMinInterval); now < due {
			if next == 0 || due < next {
				next = due
			}
		} else {
			changed = true
		}
	}
	if changed {
		t.rebuildLocked(now)
	}
	return next
}

// run ends ejections and advances slow start on time, until ctx ends.
func (t *table) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t.mu.Lock()
		now := t.cfg.now()
		next := t.expireLocked(now)
		addrs, due := t.endHoldLocked(now)
		if due != 0 && (next == 0 || due < next) {
			next = due
		}
		t.mu.Unlock()
		if addrs != nil {
			t.publishMembership()
		}
		wait := time.Hour
		if next != 0 {
			wait = time.Duration(next - now)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// publishMembership hands the current address list to onMembership.
func (t *table) publishMembership() {
	if t.onMembership == nil {
		return
	}
	t.memberMu.Lock()
	defer t.memberMu.Unlock()
	t.onMembership(t.addrs())
}

// addrs returns the current addresses in order.
func (t *table) addrs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, len(t.sorted))
	for i, ep := range t.sorted {
		out[i] = ep.addr
	}
	return out
}
