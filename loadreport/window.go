package loadreport

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// rateWindow measures, over consecutive windows, the requests completed per
// second and the mean number in flight. The mean comes from Little's law:
// the time the window's completed requests spent in flight, divided by the
// window's length (a long request counts wholly in the window it ends in).
// Windows roll lazily, when a report is made after the current one ended,
// so nothing runs while nobody asks.
type rateWindow struct {
	d    time.Duration
	base time.Time // monotonic origin of next

	completed atomic.Int64
	busy      atomic.Int64 // nanoseconds in flight of completed requests

	next    atomic.Int64  // end of the current window, nanoseconds after base
	rps     atomic.Uint64 // float64 bits, of the last full window
	meanRIF atomic.Uint64 // float64 bits
	ready   atomic.Bool   // a full window was measured

	mu                  sync.Mutex // serializes rolls
	start               time.Time  // guarded by mu
	startDone, startBsy int64      // guarded by mu
}

func newRateWindow(d time.Duration, now time.Time) *rateWindow {
	w := &rateWindow{d: d, base: now, start: now}
	w.next.Store(int64(d))
	return w
}

// done records one completed request that was in flight for took.
func (w *rateWindow) done(took time.Duration) {
	w.completed.Add(1)
	w.busy.Add(int64(max(took, 0)))
}

// rates returns the figures of the last full window, rolling it first if
// it ended; ok is false until one full window passed.
func (w *rateWindow) rates(now time.Time) (rps, meanRIF float64, ok bool) {
	if int64(now.Sub(w.base)) >= w.next.Load() {
		w.roll(now)
	}
	if !w.ready.Load() {
		return 0, 0, false
	}
	return math.Float64frombits(w.rps.Load()), math.Float64frombits(w.meanRIF.Load()), true
}

// roll closes the current window at now. Only one caller rolls; the others
// keep reading the previous figures meanwhile.
func (w *rateWindow) roll(now time.Time) {
	if !w.mu.TryLock() {
		return
	}
	defer w.mu.Unlock()
	if int64(now.Sub(w.base)) < w.next.Load() {
		return // rolled by someone else meanwhile
	}
	elapsed := now.Sub(w.start)
	if elapsed <= 0 {
		return
	}
	done, busy := w.completed.Load(), w.busy.Load()
	w.rps.Store(math.Float64bits(float64(done-w.startDone) / elapsed.Seconds()))
	w.meanRIF.Store(math.Float64bits(float64(busy-w.startBsy) / float64(elapsed)))
	w.ready.Store(true)
	w.start, w.startDone, w.startBsy = now, done, busy
	w.next.Store(int64(now.Sub(w.base) + w.d))
}
