package client

import (
	"testing"
	"time"

	"github.com/smartroute/smartroute/loadreport"
)

// A client whose latest answer came from an endpoint with room sends its
// next request there, unless another endpoint is clearly faster: two
// equal endpoints would otherwise each get the next request by a coin,
// and independent clients that trade a slot they hold for one they only
// remember herd.
func TestVacancyKeepsTheNextRequest(t *testing.T) {
	tb, clk := testTable(t, addrs(2), WithoutProbe())
	a, b := tb.snapshot().all[0], tb.snapshot().all[1]
	for range 20 {
		for _, ep := range []*endpoint{a, b} {
			tb.observe(ep, outcomeSuccess, 3*time.Millisecond, clk.now())
		}
		clk.advance(time.Millisecond)
	}
	tb.refreshNow(clk.now())
	room := loadreport.Report{RIF: 1, Capacity: 4}
	room.Has = loadreport.FieldRIF | loadreport.FieldCapacity
	for _, ep := range []*endpoint{a, b} {
		to := 0
		for range 200 {
			tb.recordLoad(ep, room, clk.now())
			pr := pickRequest{now: clk.now()}
			if tb.snapshot().pick(&pr) == ep {
				to++
			}
		}
		if to < 190 {
			t.Errorf("%s reported room before each pick and took %d of 200, want (nearly) all", ep.addr, to)
		}
	}

	// A dry pick (Client.Pick) takes no vacancy, and a vacancy older than
	// vacancyMaxAge is none.
	tb.recordLoad(a, room, clk.now())
	clk.advance(vacancyMaxAge + time.Millisecond)
	to := 0
	for range 200 {
		tb.recordLoad(a, room, clk.now()-int64(vacancyMaxAge)-1)
		pr := pickRequest{now: clk.now()}
		if tb.snapshot().pick(&pr) == a {
			to++
		}
	}
	if to > 150 {
		t.Errorf("a stale vacancy still held: %s took %d of 200 picks", a.addr, to)
	}

	// A much faster endpoint wins over the vacancy.
	for range 20 {
		tb.observe(b, outcomeSuccess, time.Millisecond, clk.now())
		clk.advance(time.Millisecond)
	}
	tb.refreshNow(clk.now())
	to = 0
	for range 200 {
		tb.recordLoad(a, room, clk.now())
		pr := pickRequest{now: clk.now()}
		if tb.snapshot().pick(&pr) == a {
			to++
		}
	}
	if to > 20 {
		t.Errorf("the vacancy at %s (3 ms) took %d of 200 picks from %s (1 ms), want few", a.addr, to, b.addr)
	}
}

// How full an endpoint usually is keeps weighing on its cost after its
// latest report is too old to tell its load now, fading over
// usualLoadMemory max ages: clients that all forgot at once that the
// fast endpoints are usually full would return to them together.
func TestUsualLoadOutlivesTheReportsMaxAge(t *testing.T) {
	tb, clk := testTable(t, addrs(2), WithoutProbe())
	fast, slow := tb.snapshot().all[0], tb.snapshot().all[1]
	full := loadreport.Report{RIF: 2, Capacity: 2}
	full.Has = loadreport.FieldRIF | loadreport.FieldCapacity
	idle := loadreport.Report{RIF: 0, Capacity: 2}
	idle.Has = full.Has
	for range 50 {
		tb.observe(fast, outcomeSuccess, 3*time.Millisecond, clk.now())
		tb.recordLoad(fast, full, clk.now())
		tb.observe(slow, outcomeSuccess, 5*time.Millisecond, clk.now())
		tb.recordLoad(slow, idle, clk.now())
		clk.advance(time.Millisecond)
	}
	cheaper := func() *endpoint {
		now := clk.now()
		tb.refreshNow(now)
		if expectedOf(tb.cfg, fast, now) < expectedOf(tb.cfg, slow, now) {
			return fast
		}
		return slow
	}
	if got := cheaper(); got != slow {
		t.Fatalf("with fresh reports of a full fast endpoint, %s is cheaper, want the slow one with room", got.addr)
	}
	clk.advance(2 * DefaultLoadReportMaxAge)
	if got := cheaper(); got != slow {
		t.Errorf("two max ages after the reports, the fast endpoint (usually full) is cheaper: it was forgotten at once")
	}
	if !fast.hot.busy(clk.now(), DefaultLoadReportMaxAge) {
		t.Errorf("two max ages after the reports, the usually full endpoint may be explored: exploration would queue there")
	}
	clk.advance(40 * usualLoadMemory * DefaultLoadReportMaxAge)
	if got := cheaper(); got != fast {
		t.Errorf("long after the last report, the fast endpoint is still dearer: its usual load never fades")
	}
	if fast.hot.busy(clk.now(), DefaultLoadReportMaxAge) {
		t.Errorf("long after the last report, the endpoint is still too busy to explore")
	}
}

// A backend that was briefly overloaded gets its traffic back once its
// reports (here a probe's, every 500 ms) show room again: a report after a
// pause weighs more in its usual load than one of a steady stream, so the
// overload is not remembered for as many reports as it lasted.
func TestBriefOverloadIsForgottenWithinAFewProbes(t *testing.T) {
	tb, clk := testTable(t, addrs(2), WithoutProbe())
	surged, other := tb.snapshot().all[0], tb.snapshot().all[1]
	report := func(ep *endpoint, rif float64) {
		r := loadreport.Report{RIF: rif, Capacity: 8, Has: loadreport.FieldRIF | loadreport.FieldCapacity}
		tb.recordLoad(ep, r, clk.now())
	}
	for range 100 {
		tb.observe(surged, outcomeSuccess, 6*time.Millisecond, clk.now())
		tb.observe(other, outcomeSuccess, 10*time.Millisecond, clk.now())
		report(surged, 1)
		report(other, 1)
		clk.advance(5 * time.Millisecond)
	}
	for range 200 { // the surge: 1 s of reports of 24 requests in flight
		report(surged, 24)
		clk.advance(5 * time.Millisecond)
	}
	cheaper := func() bool {
		now := clk.now()
		tb.refreshNow(now)
		return expectedOf(tb.cfg, surged, now) < expectedOf(tb.cfg, other, now)
	}
	if cheaper() {
		t.Fatal("during the surge the surged backend is still the cheaper")
	}
	for probe := 1; probe <= 4; probe++ {
		clk.advance(250 * time.Millisecond)
		report(surged, 0)
		// Judged between probes, once the report is no longer fresh:
		// by the usual load alone.
		clk.advance(250 * time.Millisecond)
		if cheaper() {
			t.Logf("the surged backend is the cheaper again after %d probe reports", probe)
			return
		}
	}
	t.Fatal("4 probe reports of an idle backend (2 s) did not bring it back: the surge is remembered report by report")
}
