package client

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// fakeClock is a settable monotonic clock for tests of time-driven
// behaviour (decay, ejection, slow start) that must not depend on the
// machine's speed.
type fakeClock struct{ t int64 }

func (c *fakeClock) now() int64              { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t += int64(d) }

// testTable builds a table of the given endpoints with opts applied, on a
// fake clock.
func testTable(t testing.TB, eps []resolver.Endpoint, opts ...Option) (*table, *fakeClock) {
	t.Helper()
	cfg := defaultConfig()
	clk := &fakeClock{t: int64(time.Hour)}
	cfg.now = clk.now
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	cfg.derive()
	cfg.logger = discardLogger()
	m, err := newClientMetrics(nil, "test", cfg.policy, false)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(&cfg, m)
	tb.update(resolver.State{Endpoints: eps})
	return tb, clk
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// refreshNow runs the table's periodic refresh at now, as the clock
// goroutine does every 10 ms.
func (tb *table) refreshNow(now int64) {
	budget := float64(exploreBurst)
	for _, p := range tb.snapshot().pools() {
		p.refresh(tb.cfg, now, &budget)
	}
}

func addrs(n int) []resolver.Endpoint {
	eps := make([]resolver.Endpoint, n)
	for i := range eps {
		eps[i] = resolver.Endpoint{Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1)}
	}
	return eps
}

func (tb *table) ep(addr string) *endpoint {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.endpoints[addr]
}

// pickN picks n times and counts picks per address.
func pickN(tb *table, clk *fakeClock, n int, prep func(*pickRequest)) map[string]int {
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		pr := pickRequest{now: clk.now()}
		if prep != nil {
			prep(&pr)
		}
		if ep := tb.snapshot().pick(&pr); ep != nil {
			counts[ep.addr]++
		} else {
			counts[""]++
		}
	}
	return counts
}

func TestWeightedRoundRobinIsSmoothLikeNginx(t *testing.T) {
	eps := []resolver.Endpoint{
		{Addr: "a:1", Weight: 5}, {Addr: "b:1", Weight: 1}, {Addr: "c:1", Weight: 1},
	}
	tb, clk := testTable(t, eps, WithPolicy(WeightedRoundRobin), WithoutProbe())
	p := tb.snapshot().stable
	var seq []string
	for _, i := range p.wrr {
		seq = append(seq, p.eps[i].addr[:1])
	}
	// nginx's smooth WRR for 5,1,1 (from ngx_http_upstream_round_robin.c).
	if got, want := strings.Join(seq, ""), "aabacaa"; got != want {
		t.Fatalf("schedule %s, want %s", got, want)
	}
	counts := pickN(tb, clk, 7000, nil)
	if counts["a:1"] != 5000 || counts["b:1"] != 1000 || counts["c:1"] != 1000 {
		t.Fatalf("7000 picks: %v, want exactly 5000/1000/1000", counts)
	}
}

func TestWeightedRoundRobinProportionsMatchWeights(t *testing.T) {
	for _, n := range []int{3, 50, 3000} { // 3000 uses the EDF schedule
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			eps := addrs(n)
			total := 0
			for i := range eps {
				eps[i].Weight = uint32(i%7 + 1)
				total += int(eps[i].Weight)
			}
			tb, clk := testTable(t, eps, WithPolicy(WeightedRoundRobin), WithoutProbe())
			counts := pickN(tb, clk, total*3, nil)
			for _, e := range eps {
				if got, want := counts[e.Addr], 3*int(e.Weight); got != want {
					t.Fatalf("%s weight %d: %d picks in three cycles, want %d", e.Addr, e.Weight, got, want)
				}
			}
		})
	}
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	tb, clk := testTable(t, addrs(4), WithPolicy(RoundRobin), WithoutProbe())
	counts := pickN(tb, clk, 400, nil)
	for _, e := range addrs(4) {
		if counts[e.Addr] != 100 {
			t.Fatalf("round robin counts %v, want 100 each", counts)
		}
	}
}

func TestConsistentHashMovesAboutOneNthOfKeysWhenOneIsAdded(t *testing.T) {
	const n, keys = 10, 20000
	before, clk := testTable(t, addrs(n), WithPolicy(ConsistentHash), WithoutProbe(), WithHashKey(HashByHeader("X")))
	after, _ := testTable(t, addrs(n+1), WithPolicy(ConsistentHash), WithoutProbe(), WithHashKey(HashByHeader("X")))
	owner := func(tb *table, key string) string {
		pr := pickRequest{now: clk.now(), hash: hashKey(key), hasHash: true}
		return tb.snapshot().pick(&pr).addr
	}
	moved := 0
	load := map[string]int{}
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("user-%d", k)
		a, b := owner(before, key), owner(after, key)
		load[a]++
		if a != b {
			moved++
			if b != addrs(n + 1)[n].Addr {
				t.Fatalf("key %s moved from %s to %s, not to the new endpoint", key, a, b)
			}
		}
		if owner(before, key) != a {
			t.Fatalf("key %s not stable", key)
		}
	}
	share := float64(moved) / keys
	if ideal := 1.0 / (n + 1); share < ideal/2 || share > ideal*1.5 {
		t.Fatalf("adding one endpoint to %d moved %.1f%% of keys, want about %.1f%%", n, 100*share, 100*ideal)
	}
	for addr, c := range load {
		if ideal := float64(keys) / n; math.Abs(float64(c)-ideal) > 0.35*ideal {
			t.Fatalf("%s owns %d keys, want about %.0f", addr, c, ideal)
		}
	}
}

func TestConsistentHashSkipsAnEjectedEndpointOnly(t *testing.T) {
	tb, clk := testTable(t, addrs(5), WithPolicy(ConsistentHash), WithoutProbe(), WithHashKey(HashByHeader("X")))
	owner := func(key string) string {
		pr := pickRequest{now: clk.now(), hash: hashKey(key), hasHash: true}
		return tb.snapshot().pick(&pr).addr
	}
	first := map[string]string{}
	for k := 0; k < 1000; k++ {
		key := fmt.Sprint(k)
		first[key] = owner(key)
	}
	gone := addrs(5)[2].Addr
	tb.maybeEject(tb.ep(gone), 5, clk.now())
	for key, was := range first {
		now := owner(key)
		if was != gone && now != was {
			t.Fatalf("key %s moved from %s to %s though only %s left", key, was, now, gone)
		}
		if now == gone {
			t.Fatalf("key %s still goes to ejected %s", key, gone)
		}
	}
}

func TestLeastLatencyPrefersLowestCostAndSpreadsAmongEquals(t *testing.T) {
	tb, clk := testTable(t, addrs(4), WithoutProbe(), WithTieBand(0.2))
	lat := []time.Duration{5 * time.Millisecond, 5 * time.Millisecond, 5200 * time.Microsecond, 25 * time.Millisecond}
	for i, e := range addrs(4) {
		// Twice: a first answer alone is followed up at once.
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat[i], clk.now())
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat[i], clk.now())
	}
	tb.refreshNow(clk.now())
	counts := pickN(tb, clk, 3000, nil)
	if counts[addrs(4)[3].Addr] != 0 {
		t.Fatalf("slow endpoint picked %d times: %v", counts[addrs(4)[3].Addr], counts)
	}
	for _, e := range addrs(4)[:3] {
		if c := counts[e.Addr]; c < 800 {
			t.Fatalf("near-equal endpoint %s picked %d of 3000: the tie band does not spread: %v", e.Addr, c, counts)
		}
	}
	// Among near-equals, fewer requests in flight wins: the two 5 ms
	// endpoints are busy, the 5.2 ms one idle.
	for _, e := range addrs(4)[:2] {
		tb.ep(e.Addr).hot.inflight.Store(3)
	}
	counts = pickN(tb, clk, 300, nil)
	if c := counts[addrs(4)[2].Addr]; c < 150 {
		t.Fatalf("with the other two busy, the idle near-equal endpoint got %d of 300: %v", c, counts)
	}
	// A server that reports it is full (hot, in Prequal's terms) costs a
	// queue: 7 in flight against a capacity of 1 makes each fast endpoint
	// cost 5ms×8 = 40ms, more than the idle slow one's 25ms.
	for _, e := range addrs(4)[:3] {
		tb.ep(e.Addr).hot.report(7, 1, clk.now(), tb.cfg.maxReportAge)
	}
	tb.refreshNow(clk.now())
	counts = pickN(tb, clk, 100, nil)
	if counts[addrs(4)[3].Addr] != 100 {
		t.Fatalf("with every fast server reporting 7 in flight for a capacity of 1, picks %v, want all on the idle slow one", counts)
	}
}

// Equal endpoints get equal shares, wherever they sit in the table and
// whatever sits beside them: a pick's random bits must not favour one
// place over another, or every client of a service (which all see the
// endpoints in the same order) would favour the same endpoint. A
// challenger that fell back from the leader used to be drawn from the
// leader's own bits, so it was always the leader's neighbour: the first
// of three equals got 26% of the picks and the last 38%.
func TestLatencyPoliciesGiveEqualsEqualShares(t *testing.T) {
	for _, policy := range []Policy{LeastLatency, P2C} {
		for _, tc := range []struct {
			equal, slow int
		}{{2, 3}, {3, 1}, {4, 0}, {5, 5}} {
			t.Run(fmt.Sprintf("%s/%d_equal_%d_slow", policy, tc.equal, tc.slow), func(t *testing.T) {
				eps := addrs(tc.equal + tc.slow)
				tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(policy))
				for i, e := range eps {
					lat := 5 * time.Millisecond
					if i >= tc.equal {
						lat = 25 * time.Millisecond
					}
					tb.observe(tb.ep(e.Addr), outcomeSuccess, lat, clk.now())
				}
				tb.refreshNow(clk.now())
				counts := pickN(tb, clk, 30000, nil)
				var total int
				for _, e := range eps[:tc.equal] {
					total += counts[e.Addr]
				}
				// An even share of what the equals took, give or take 10%
				// of it: more than ten standard deviations of chance.
				even := float64(total) / float64(tc.equal)
				for _, e := range eps[:tc.equal] {
					if c := float64(counts[e.Addr]); c < 0.9*even || c > 1.1*even {
						t.Errorf("%s picked %.0f times, want about %.0f: %v", e.Addr, c, even, counts)
					}
				}
			})
		}
	}
}

// In a pool larger than its challenger set, least_latency draws its
// challengers from a set a refresh drew; over refreshes the equals still
// share alike, and the slow endpoints take almost nothing.
func TestLargePoolGivesEqualsEqualShares(t *testing.T) {
	const equal, slow = 5, 300 // more than challengerSet
	eps := addrs(equal + slow)
	tb, clk := testTable(t, eps, WithoutProbe())
	for i, e := range eps {
		lat := 5 * time.Millisecond
		if i >= equal {
			lat = 25 * time.Millisecond
		}
		// Twice: a first answer alone is followed up at once.
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat, clk.now())
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat, clk.now())
	}
	counts := map[string]int{}
	for range 300 { // a refresh every 100 picks, as at 10,000 picks a second
		tb.refreshNow(clk.now())
		if s := tb.snapshot().stable.sampler.Load(); len(s.set) != challengerSet {
			t.Fatalf("pool of %d: challenger set of %d, want %d", len(eps), len(s.set), challengerSet)
		}
		for a, c := range pickN(tb, clk, 100, nil) {
			counts[a] += c
		}
	}
	var total int
	for _, e := range eps[:equal] {
		total += counts[e.Addr]
	}
	if total < 29_900 {
		t.Errorf("the %d fast endpoints took %d of 30000 picks, want almost all", equal, total)
	}
	even := float64(total) / equal
	for _, e := range eps[:equal] {
		if c := float64(counts[e.Addr]); c < 0.9*even || c > 1.1*even {
			t.Errorf("%s picked %.0f times, want about %.0f", e.Addr, c, even)
		}
	}
}

// The fastest endpoint keeps its traffic through the jitter of a busy
// machine. Its answers spread from 2.3 to 3.7 ms, and it has this client's
// requests in flight; a 5 ms endpoint answered once, at 5.3 ms. Counting
// the fast one's spread a second time (the cost was once est²/floor) put
// it within the tie band of the slow one at the top of its jitter, and
// the tie went to the endpoint with fewer requests in flight: the slow
// one took every pick. In the shift benchmark, a fifth to two thirds of
// the first half's requests of some runs went to endpoints twice as slow.
func TestJitterDoesNotCostTheFastestItsTraffic(t *testing.T) {
	eps := addrs(2)
	tb, clk := testTable(t, eps, WithoutProbe())
	fast, slow := tb.ep(eps[0].Addr), tb.ep(eps[1].Addr)
	tb.observe(slow, outcomeSuccess, 5300*time.Microsecond, clk.now())
	// Alternating answers, ending at the top of the jitter: two slow ones.
	for i := range 41 {
		clk.advance(time.Millisecond)
		lat := 2300 * time.Microsecond
		if i%2 == 1 || i == 40 {
			lat = 3700 * time.Microsecond
		}
		tb.observe(fast, outcomeSuccess, lat, clk.now())
	}
	for range 3 {
		fast.hot.start(clk.now())
	}
	tb.refreshNow(clk.now())
	counts := pickN(tb, clk, 1000, nil)
	if n := counts[slow.addr]; n > 10 {
		t.Errorf("the 5.3 ms endpoint took %d of 1000 picks from one answering in 2.3–3.7 ms (estimate %.2f ms, floor %.2f ms, cost %.2f ms), want at most 1%%",
			n, loadFloat(&fast.hot.est)/1e6, loadFloat(&fast.hot.floor)/1e6, loadFloat(&fast.hot.base)/1e6)
	}
}

// One answer is not a lesson. A fast endpoint whose first answer came
// during a stall of the client's machine (200 ms; it answers in 2 ms) is
// measured again at the next refresh (out of the exploration budget, of
// which a new client has a full bucket), and takes the traffic from a
// 10 ms endpoint within tens of milliseconds. It used to wait for its
// exploration interval, 100 ms × 20 (its cost over the best's) stretched
// by up to 1.5: examples/grpc's client sent 148 of its 150 calls to the
// 10 ms server in one stress run of three (and in 1 of 15 runs beside
// two CPU-bound processes; 0 of 15 with the fix).
func TestOneSlowFirstAnswerIsMeasuredAgain(t *testing.T) {
	eps := addrs(2)
	tb, clk := testTable(t, eps, WithoutProbe())
	fast, steady := tb.ep(eps[0].Addr), tb.ep(eps[1].Addr)
	for range 5 {
		clk.advance(time.Millisecond)
		tb.observe(steady, outcomeSuccess, 10*time.Millisecond, clk.now())
	}
	tb.observe(fast, outcomeSuccess, 200*time.Millisecond, clk.now())
	// 100 ms of sequential requests, one per millisecond, each answered
	// at once at the endpoint's real latency; a refresh every 10 ms.
	var late int // the fast endpoint's picks in the last 50 ms
	for step := range 100 {
		clk.advance(time.Millisecond)
		if step%10 == 0 {
			tb.refreshNow(clk.now())
		}
		pr := pickRequest{now: clk.now()}
		ep := tb.snapshot().pick(&pr)
		lat := 10 * time.Millisecond
		if ep == fast {
			lat = 2 * time.Millisecond
			if step >= 50 {
				late++
			}
		}
		ep.hot.start(clk.now())
		ep.hot.answered(clk.now())
		ep.hot.inflight.Add(-1)
		tb.observe(ep, outcomeSuccess, lat, clk.now())
	}
	if late < 45 {
		t.Errorf("the 2 ms endpoint took %d of the last 50 picks after one 200 ms first answer (estimate %.1f ms), want at least 45",
			late, loadFloat(&fast.hot.est)/1e6)
	}
}

// One spike or one failure costs an endpoint little: the estimate follows
// a spike part of the way and comes back within a few answers, and a
// failure's penalty fades within the failure penalty time.
func TestEstimateIsQuickToPunishAndQuickToForgive(t *testing.T) {
	tb, clk := testTable(t, addrs(1), WithoutProbe())
	ep := tb.ep(addrs(1)[0].Addr)
	est := func() time.Duration { return time.Duration(loadFloat(&ep.hot.est)) }
	for range 5 {
		clk.advance(10 * time.Millisecond)
		tb.observe(ep, outcomeSuccess, 5*time.Millisecond, clk.now())
	}
	clk.advance(10 * time.Millisecond)
	tb.observe(ep, outcomeSuccess, 50*time.Millisecond, clk.now())
	if got := est(); got < 12*time.Millisecond || got > 20*time.Millisecond {
		t.Fatalf("after a 10× spike the estimate is %v, want it raised part of the way (about 16ms)", got)
	}
	for range 4 {
		clk.advance(10 * time.Millisecond)
		tb.observe(ep, outcomeSuccess, 5*time.Millisecond, clk.now())
	}
	if got := est(); got > 6250*time.Microsecond {
		t.Fatalf("four answers at 5ms after the spike leave the estimate at %v, want within 25%% of 5ms", got)
	}
	expected := func() float64 { return expectedOf(tb.cfg, ep, clk.now()) }
	base := expected()
	tb.observe(ep, outcomeFailure, time.Millisecond, clk.now())
	if got := expected() / base; got < 4.9 {
		t.Fatalf("right after a failure the expected latency is %.1f× its estimate, want 5×", got)
	}
	if got := est(); got > 6250*time.Microsecond {
		t.Fatalf("a fast failure changed the latency estimate to %v", got)
	}
	clk.advance(DefaultFailurePenalty)
	if got := expected() / base; got > 1.15 {
		t.Fatalf("one failure penalty time after a failure the expected latency is still %.2f× its estimate", got)
	}
	// Failure after failure keeps it out.
	for range 5 {
		clk.advance(100 * time.Millisecond)
		tb.observe(ep, outcomeFailure, time.Millisecond, clk.now())
	}
	if got := expected() / base; got < 8 {
		t.Fatalf("after five failures in half a second the expected latency is only %.1f× its estimate", got)
	}
}

// A caller's deadline or a per-try timeout is a lower bound on the
// latency: it raises the estimate, and never lowers it.
func TestTimedOutAttemptRaisesTheEstimate(t *testing.T) {
	tb, clk := testTable(t, addrs(1), WithoutProbe())
	ep := tb.ep(addrs(1)[0].Addr)
	tb.observe(ep, outcomeSuccess, 5*time.Millisecond, clk.now())
	tb.observe(ep, outcomeFailure, 150*time.Millisecond, clk.now())
	if got := time.Duration(loadFloat(&ep.hot.est)); got < 25*time.Millisecond {
		t.Fatalf("a request that timed out after 150ms left the estimate at %v", got)
	}
}

// An endpoint not measured for long gets one exploratory request, not a
// burst, and not before its slowness says it is worth it.
func TestIdleEndpointIsExploredAgain(t *testing.T) {
	// 30ms against 5ms: explored after 100ms × 6 = 600ms, stretched by
	// the client's own factor of 0.5–1.5 (exploreJitter).
	if explored := idleExploredAfter(t); explored < 250*time.Millisecond || explored > 2*time.Second {
		t.Fatalf("the slow endpoint was explored %v after its last sample, want after 300–900ms", explored)
	}
}

// Re-measuring endpoints that did not change is a small tax: among 100
// endpoints, 99 of them slow and all of them due for another look within
// seconds, exploration takes at most the 0.5% of the client's requests
// that README promises (plus the bucket's burst), yet it does take some.
// (At 2%, this client explored about 345 of 40,000 requests.)
func TestExplorationStaysWithinItsBudget(t *testing.T) {
	eps := addrs(100)
	tb, clk := testTable(t, eps, WithoutProbe())
	lat := func(i int) time.Duration {
		if i == 0 {
			return 2 * time.Millisecond
		}
		return time.Duration(10+i%30) * time.Millisecond
	}
	byAddr := make(map[string]int, len(eps))
	for i, e := range eps {
		byAddr[e.Addr] = i
		// Twice: a first answer alone is followed up at once, outside
		// the budget (see TestOneSlowFirstAnswerIsMeasuredAgain).
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat(i), clk.now())
		tb.observe(tb.ep(e.Addr), outcomeSuccess, lat(i), clk.now())
	}
	const picks = 40_000 // 4 s at 10,000 requests a second
	explored := 0
	for k := range picks {
		clk.advance(100 * time.Microsecond)
		if k%100 == 0 {
			tb.refresh(clk.now()) // what the clock goroutine does every 10 ms
		}
		pr := pickRequest{now: clk.now()}
		ep := tb.snapshot().pick(&pr)
		if pr.explored {
			explored++
		}
		ep.hot.exploring.Store(false) // what the answer does (hotState.answered)
		tb.observe(ep, outcomeSuccess, lat(byAddr[ep.addr]), clk.now())
	}
	const share = 0.005
	if most := share*picks + exploreBurst + 1; float64(explored) > most {
		t.Errorf("%d of %d requests explored, want at most %.0f (%.1f%%)", explored, picks, most, 100*share)
	}
	if explored < picks*share/2 {
		t.Errorf("%d of %d requests explored, want about %.0f: stale endpoints must still be looked at again", explored, picks, share*picks)
	}
}

// Independent clients that see the same endpoints alike explore them at
// different moments: together, they would queue an endpoint at once.
func TestClientsExploreAtDifferentMoments(t *testing.T) {
	seen := make(map[time.Duration]bool)
	for range 8 {
		seen[idleExploredAfter(t)] = true
	}
	if len(seen) < 3 {
		t.Fatalf("8 clients explored the idle endpoint at %d different moments, want them spread", len(seen))
	}
}

// idleExploredAfter returns how long after its last sample a new client's
// slow, idle endpoint got an exploratory request, picks every 10 ms.
func idleExploredAfter(t *testing.T) time.Duration {
	t.Helper()
	tb, clk := testTable(t, addrs(2), WithoutProbe(), WithTieBand(0))
	fast, slow := tb.ep(addrs(2)[0].Addr), tb.ep(addrs(2)[1].Addr)
	// Twice: a first answer alone is followed up at once (see
	// TestOneSlowFirstAnswerIsMeasuredAgain).
	tb.observe(slow, outcomeSuccess, 30*time.Millisecond, clk.now())
	tb.observe(slow, outcomeSuccess, 30*time.Millisecond, clk.now())
	start := clk.now()
	for range 500 { // 5 s
		clk.advance(10 * time.Millisecond)
		tb.observe(fast, outcomeSuccess, 5*time.Millisecond, clk.now())
		tb.refreshNow(clk.now())
		counts := pickN(tb, clk, 4, nil)
		if c := counts[slow.addr]; c > 0 {
			if c > 1 {
				t.Fatalf("exploration sent %d requests at once to the slow endpoint", c)
			}
			return time.Duration(clk.now() - start)
		}
	}
	t.Fatal("the slow endpoint was never explored within 5 s")
	return 0
}

func TestNewEndpointStartsFromProbeRTTNotZero(t *testing.T) {
	tb, clk := testTable(t, addrs(1), WithoutProbe())
	old := tb.ep(addrs(1)[0].Addr)
	tb.observe(old, outcomeSuccess, 5*time.Millisecond, clk.now())
	tb.update(resolver.State{Endpoints: addrs(2)})
	fresh := tb.ep(addrs(2)[1].Addr)
	est := func(ep *endpoint) time.Duration { return time.Duration(loadFloat(&ep.hot.est)) }
	if got := est(fresh); got != DefaultRTT {
		t.Fatalf("new endpoint starts at %v, want the default %v", got, DefaultRTT)
	}
	tb.onProbe(probe.Event{Status: probe.Status{Addr: fresh.addr, Health: probe.Healthy, RTT: 2 * time.Millisecond}})
	if got := est(fresh); got != 2*time.Millisecond {
		t.Fatalf("after a probe the estimate is %v, want the 2ms probe RTT", got)
	}
	if got := est(old); got != 5*time.Millisecond {
		t.Fatalf("adding an endpoint reset the old one's estimate to %v", got)
	}
}

func TestUnhealthyDrainingAndUnselectedAreNotPicked(t *testing.T) {
	eps := addrs(5)
	eps[0].Draining = true
	eps[1].Labels = map[string]string{"tier": "batch"}
	for i := 2; i < 5; i++ {
		eps[i].Labels = map[string]string{"tier": "web"}
	}
	tb, clk := testTable(t, eps, WithoutProbe(), WithLabelSelector(map[string]string{"tier": "web"}), WithPanicThreshold(0))
	tb.onProbe(probe.Event{Status: probe.Status{Addr: eps[2].Addr, Health: probe.Unhealthy}})
	counts := pickN(tb, clk, 300, nil)
	for _, i := range []int{0, 1, 2} {
		if counts[eps[i].Addr] != 0 {
			t.Fatalf("%s picked %d times: %v", eps[i].Addr, counts[eps[i].Addr], counts)
		}
	}
	if counts[eps[3].Addr]+counts[eps[4].Addr] != 300 {
		t.Fatalf("picks %v", counts)
	}
}

func TestPanicModePicksAmongAllWhenMostAreUnhealthy(t *testing.T) {
	eps := addrs(5)
	tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(RoundRobin))
	for _, e := range eps[:3] {
		tb.onProbe(probe.Event{Status: probe.Status{Addr: e.Addr, Health: probe.Unhealthy}})
	}
	// 2 of 5 healthy is under the 50% threshold: all five are picked.
	counts := pickN(tb, clk, 500, nil)
	for _, e := range eps {
		if counts[e.Addr] != 100 {
			t.Fatalf("panic mode picks %v, want 100 each", counts)
		}
	}
	if !tb.snapshot().stable.panic {
		t.Fatal("snapshot not marked as panic")
	}
	tb.onProbe(probe.Event{Status: probe.Status{Addr: eps[0].Addr, Health: probe.Healthy}})
	// 3 of 5 healthy: out of panic, unhealthy ones get nothing.
	counts = pickN(tb, clk, 300, nil)
	if counts[eps[1].Addr]+counts[eps[2].Addr] != 0 {
		t.Fatalf("after recovery picks %v", counts)
	}
}

// In panic mode a retry goes to a healthy endpoint it has not tried
// before it bets on another one the health signal condemns: with four of
// five endpoints failing, a request that failed on one of them reaches the
// healthy one on its next attempt, whatever the policy. Only once that one
// was tried too does a retry go to the others.
func TestPanicModeRetriesGoToTheHealthyEndpointFirst(t *testing.T) {
	for _, policy := range []Policy{LeastLatency, P2C, LeastRequest, RoundRobin, WeightedRoundRobin, ConsistentHash} {
		t.Run(string(policy), func(t *testing.T) {
			eps := addrs(5)
			tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(policy))
			for _, e := range eps[:4] {
				tb.onProbe(probe.Event{Status: probe.Status{Addr: e.Addr, Health: probe.Unhealthy}})
			}
			if !tb.snapshot().stable.panic {
				t.Fatal("snapshot not marked as panic")
			}
			healthy := tb.ep(eps[4].Addr)
			for i, e := range eps[:4] {
				failed := tb.ep(e.Addr)
				retries := pickN(tb, clk, 50, func(r *pickRequest) {
					r.hash, r.hasHash = uint64(i)*0x9E3779B97F4A7C15, true
					r.addTried(failed)
				})
				if retries[healthy.addr] != 50 {
					t.Fatalf("retries after a failure on %s went to %v, want all 50 on the healthy %s", failed.addr, retries, healthy.addr)
				}
			}
			// The healthy one tried as well: the next attempt goes to one
			// not tried yet, healthy or not.
			retries := pickN(tb, clk, 50, func(r *pickRequest) {
				r.addTried(tb.ep(eps[0].Addr))
				r.addTried(healthy)
			})
			if retries[healthy.addr]+retries[eps[0].Addr]+retries[""] != 0 {
				t.Fatalf("third attempts went to %v, want endpoints not tried yet", retries)
			}
		})
	}
}

func TestOutlierDetectionEjectsAndReturnsAfterEjectionTime(t *testing.T) {
	eps := addrs(10)
	tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(RoundRobin),
		WithOutlierDetection(OutlierDetection{ConsecutiveFailures: 3, BaseEjectionTime: time.Second, MaxEjectedShare: 0.2}))
	bad := tb.ep(eps[0].Addr)
	for i := 0; i < 2; i++ {
		tb.observe(bad, outcomeFailure, time.Millisecond, clk.now())
	}
	tb.observe(bad, outcomeSuccess, time.Millisecond, clk.now()) // a success resets the streak
	for i := 0; i < 2; i++ {
		tb.observe(bad, outcomeFailure, time.Millisecond, clk.now())
	}
	if bad.ejected(clk.now()) {
		t.Fatal("ejected without 3 consecutive failures")
	}
	tb.observe(bad, outcomeFailure, time.Millisecond, clk.now())
	if !bad.ejected(clk.now()) {
		t.Fatal("not ejected after 3 consecutive failures")
	}
	if c := pickN(tb, clk, 100, nil)[bad.addr]; c != 0 {
		t.Fatalf("ejected endpoint picked %d times", c)
	}
	// Never more than 20% of 10 = 2 ejected at once.
	for _, e := range eps[1:4] {
		for i := 0; i < 3; i++ {
			tb.observe(tb.ep(e.Addr), outcomeFailure, time.Millisecond, clk.now())
		}
	}
	ejected := 0
	for _, e := range eps {
		if tb.ep(e.Addr).ejected(clk.now()) {
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("%d ejected, want the 20%% cap of 2", ejected)
	}
	// The first ejection lasts the base time; the table's timer returns
	// it (run by hand here).
	clk.advance(1001 * time.Millisecond)
	tb.mu.Lock()
	tb.expireLocked(clk.now())
	tb.mu.Unlock()
	if bad.ejected(clk.now()) || pickN(tb, clk, 100, nil)[bad.addr] == 0 {
		t.Fatal("ejected endpoint did not return after its ejection time")
	}
	// A second ejection lasts twice as long.
	for i := 0; i < 3; i++ {
		tb.observe(bad, outcomeFailure, time.Millisecond, clk.now())
	}
	clk.advance(1500 * time.Millisecond)
	if !bad.ejected(clk.now()) {
		t.Fatal("second ejection shorter than 2× the base time")
	}
}

func TestZonePreferenceSpillsOverWhenLocalZoneIsUnhealthy(t *testing.T) {
	eps := addrs(6)
	for i := range eps {
		eps[i].Zone = map[bool]string{true: "a", false: "b"}[i < 3]
	}
	for _, policy := range []Policy{RoundRobin, LeastLatency} {
		t.Run(string(policy), func(t *testing.T) {
			tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(policy), WithZone(Zone{Local: "a"}), WithPanicThreshold(0))
			counts := pickN(tb, clk, 600, nil)
			for _, e := range eps[3:] {
				if counts[e.Addr] != 0 {
					t.Fatalf("remote %s picked while the local zone is healthy: %v", e.Addr, counts)
				}
			}
			// Two of three local endpoints down: below 70% healthy, spill
			// over to every zone.
			for _, e := range eps[:2] {
				tb.onProbe(probe.Event{Status: probe.Status{Addr: e.Addr, Health: probe.Unhealthy}})
			}
			counts = pickN(tb, clk, 600, nil)
			for _, e := range eps[3:] {
				if counts[e.Addr] == 0 {
					t.Fatalf("remote %s not picked after the local zone failed: %v", e.Addr, counts)
				}
			}
		})
	}
}

func TestZonePreferenceRetriesInAnotherZone(t *testing.T) {
	eps := addrs(3)
	eps[0].Zone, eps[1].Zone, eps[2].Zone = "a", "a", "b"
	tb, clk := testTable(t, eps, WithoutProbe(), WithZone(Zone{Local: "a"}))
	s := tb.snapshot()
	var pr pickRequest
	pr.now = clk.now()
	for range 2 {
		ep := s.pick(&pr)
		if ep == nil || ep.attrs.Load().Zone != "a" {
			t.Fatalf("first attempts: picked %v, want the local zone", ep)
		}
		pr.addTried(ep)
	}
	if ep := s.pick(&pr); ep == nil || ep.addr != eps[2].Addr {
		t.Fatalf("retry after both local endpoints: picked %v, want the remote one", ep)
	}
}

func TestCanaryGetsItsShareAndMarkedRequests(t *testing.T) {
	eps := addrs(4)
	eps[3].Labels = map[string]string{"canary": "true"}
	tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(RoundRobin),
		WithCanary(Canary{Labels: map[string]string{"canary": "true"}, Share: 0.1}))
	counts := pickN(tb, clk, 20000, nil)
	share := float64(counts[eps[3].Addr]) / 20000
	if share < 0.08 || share > 0.12 {
		t.Fatalf("canary share %.3f, want about 0.10", share)
	}
	marked := pickN(tb, clk, 100, func(pr *pickRequest) { pr.canary = true })
	if marked[eps[3].Addr] != 100 {
		t.Fatalf("marked requests: %v, want all on the canary", marked)
	}
	// No eligible canary: marked requests fall back to the stable set.
	tb.update(resolver.State{Endpoints: eps[:3]})
	marked = pickN(tb, clk, 30, func(pr *pickRequest) { pr.canary = true })
	if marked[""] != 0 {
		t.Fatalf("marked requests without a canary endpoint failed: %v", marked)
	}
}

func TestSlowStartRampsANewEndpoint(t *testing.T) {
	eps := addrs(3)
	tb, clk := testTable(t, eps, WithoutProbe(), WithPolicy(LeastRequest), WithSlowStart(10*time.Second))
	clk.advance(time.Minute) // the first three are old
	tb.update(resolver.State{Endpoints: addrs(4)})
	fresh := addrs(4)[3].Addr
	early := pickN(tb, clk, 4000, nil)[fresh]
	clk.advance(10 * time.Second)
	late := pickN(tb, clk, 4000, nil)[fresh]
	if early >= 500 || late < 800 {
		t.Fatalf("new endpoint got %d of 4000 at start and %d after the window; want few, then its full share (~1000)", early, late)
	}
}

func TestRetryPicksAvoidTriedEndpoints(t *testing.T) {
	for _, policy := range Policies() {
		t.Run(string(policy), func(t *testing.T) {
			tb, clk := testTable(t, addrs(3), WithoutProbe(), WithPolicy(policy), WithHashKey(HashByHeader("X")))
			for i := 0; i < 50; i++ {
				pr := pickRequest{now: clk.now(), hash: uint64(i) * 0x9E3779B97F4A7C15, hasHash: true}
				seen := map[string]bool{}
				for k := 0; k < 3; k++ {
					ep := tb.snapshot().pick(&pr)
					if seen[ep.addr] {
						t.Fatalf("attempt %d went back to %s while others were untried", k+1, ep.addr)
					}
					seen[ep.addr] = true
					pr.addTried(ep)
				}
				if ep := tb.snapshot().pick(&pr); ep == nil {
					t.Fatal("with every endpoint tried, no repeat was allowed")
				}
			}
		})
	}
}

func TestStatePersistsAcrossMembershipChanges(t *testing.T) {
	tb, clk := testTable(t, addrs(2), WithoutProbe())
	ep := tb.ep(addrs(2)[0].Addr)
	tb.observe(ep, outcomeSuccess, 42*time.Millisecond, clk.now())
	ep.hot.inflight.Store(3)
	rtt := func() time.Duration { return time.Duration(loadFloat(&ep.hot.est)) }
	tb.update(resolver.State{Endpoints: addrs(5)})
	tb.update(resolver.State{Endpoints: addrs(4)})
	if got := tb.ep(ep.addr); got != ep || rtt() != 42*time.Millisecond || ep.hot.inflight.Load() != 3 {
		t.Fatalf("membership change reset state: same=%v rtt=%v inflight=%d", got == ep, rtt(), ep.hot.inflight.Load())
	}
	changed := addrs(4)
	changed[0].Weight = 9
	tb.update(resolver.State{Endpoints: changed})
	if ep.weight() != 9 || rtt() != 42*time.Millisecond {
		t.Fatal("attribute change lost or reset the endpoint")
	}
	tb.update(resolver.State{Err: fmt.Errorf("etcd down"), Endpoints: nil})
	if len(tb.snapshot().all) != 4 {
		t.Fatal("a resolver error dropped the last good set")
	}
}

func TestParsePolicyNamesTheValidOnes(t *testing.T) {
	if _, err := ParsePolicy("fastest"); err == nil || !strings.Contains(err.Error(), "least_latency") {
		t.Fatalf("ParsePolicy(fastest) = %v", err)
	}
	for _, p := range Policies() {
		if got, err := ParsePolicy(string(p)); err != nil || got != p {
			t.Fatalf("ParsePolicy(%s) = %v, %v", p, got, err)
		}
	}
}

// An endpoint no request has measured, whose probe RTT (a new connection
// per check) is above the others' request latency, is still explored at
// the next refresh.
func TestUnmeasuredEndpointIsExploredDespiteAHighProbeRTT(t *testing.T) {
	eps := addrs(2)
	tb, clk := testTable(t, eps, WithoutProbe(), WithTieBand(0))
	measured, fresh := tb.ep(eps[0].Addr), tb.ep(eps[1].Addr)
	for range 3 {
		pr := pickRequest{now: clk.now()}
		if ep := tb.snapshot().pick(&pr); ep != nil {
			ep.hot.start(clk.now())
			ep.hot.answered(clk.now())
			tb.observe(ep, outcomeSuccess, time.Duration(map[bool]int{true: 20, false: 5}[ep == fresh])*time.Millisecond, clk.now())
		}
	}
	tb.update(resolver.State{Endpoints: addrs(3)})
	newcomer := tb.ep(addrs(3)[2].Addr)
	tb.onProbe(probe.Event{Status: probe.Status{Addr: newcomer.addr, Health: probe.Healthy, RTT: 20 * time.Millisecond}})
	clk.advance(10 * time.Millisecond)
	tb.observe(measured, outcomeSuccess, 5*time.Millisecond, clk.now())
	tb.refreshNow(clk.now())
	if c := pickN(tb, clk, 20, nil); c[newcomer.addr] != 1 {
		t.Fatalf("the unmeasured newcomer got %d of the 20 picks after a refresh, want one exploratory request: %v", c[newcomer.addr], c)
	}
}

func TestDecayApproximatesExpAndDecreases(t *testing.T) {
	prev := 2.0
	for x := 0.0; x < 50; x += 0.01 {
		d := decay(x)
		if d >= prev || d <= 0 {
			t.Fatalf("decay(%v) = %v after %v: must decrease and stay positive", x, d, prev)
		}
		if want := math.Exp(-x); x < 1 && math.Abs(d-want)/want > 0.005 {
			t.Fatalf("decay(%v) = %v, exp = %v", x, d, want)
		}
		prev = d
	}
}

// TestExpectedFastPathAgreesWithFull checks the cheap path of expectedHot
// (a measured endpoint without reports, failures or slow start) against
// the full computation, for endpoints in every state a pick meets.
func TestExpectedFastPathAgreesWithFull(t *testing.T) {
	for _, slow := range []bool{false, true} {
		var opts []Option
		if slow {
			opts = append(opts, WithSlowStart(time.Second))
		}
		tb, clk := testTable(t, addrs(8), append(opts, WithoutProbe())...)
		now := clk.now()
		eps := tb.snapshot().all
		for i, ep := range eps {
			if i != 7 {
				tb.observe(ep, outcomeSuccess, time.Duration(2+i)*time.Millisecond, now)
			}
			switch i {
			case 1, 2: // waiting, one of them for long
				ep.hot.start(now - int64(i-1)*int64(50*time.Millisecond))
			case 3: // a failure's penalty
				tb.observe(ep, outcomeFailure, 0, now)
			case 4: // a load report
				ep.hot.report(3, 2, now, tb.cfg.maxReportAge)
			case 5: // in flight, answered
				ep.hot.start(now)
				ep.hot.answered(now)
			case 6: // an old report
				ep.hot.report(1, 4, now-int64(time.Minute), tb.cfg.maxReportAge)
			}
		}
		clk.advance(30 * time.Millisecond)
		now = clk.now()
		p := tb.snapshot().stable
		for i, ep := range p.eps {
			c, l, h := p.expectedHot(i, tb.cfg, now)
			fc, fl, fh := p.expectedFull(p.hot[i], i, tb.cfg, now)
			if c != fc || l != fl || h != fh {
				t.Errorf("slow start %v, %s: expectedHot = %v, %v, %v; full computation %v, %v, %v", slow, ep.addr, c, l, h, fc, fl, fh)
			}
		}
	}
}

// TestEveryPolicyHasAKind guards the pick path's switch: a policy added
// to Policies without a policyKind would pick nothing.
func TestEveryPolicyHasAKind(t *testing.T) {
	seen := map[policyKind]Policy{}
	for _, p := range Policies() {
		k := kindOf(p)
		if k == policyUnknown {
			t.Errorf("policy %q has no policyKind", p)
		}
		if q, dup := seen[k]; dup {
			t.Errorf("policies %q and %q share policyKind %d", q, p, k)
		}
		seen[k] = p
	}
}
