package overload

import (
	"math"
	"sync/atomic"
)

// window counts two numbers (a, b) over a sliding window of buckets, as
// Sentinel's LeapArray and go-zero's RollingWindow do, without a lock:
// every bucket is an atomic pair tagged with the slot (now / width) it
// counts for, and a bucket found holding an older slot is reset by
// whoever sees it first. A count that lands in the instant of a reset may
// be lost; for a ratio over thousands of events that is immaterial.
//
// Reading sums the closed buckets once per slot and caches the total, so
// that a read on the request path costs two atomic loads however many
// buckets the window has.
type window struct {
	width   int64 // nanoseconds per bucket
	buckets []bucket
	floor   atomic.Int64 // slots before this one were reset away
	closed  atomic.Pointer[windowSum]
}

type bucket struct {
	slot   atomic.Int64
	counts atomic.Uint64 // a in the high 32 bits, b in the low 32 bits
}

// windowSum is the total of the closed buckets of a window as seen from
// slot.
type windowSum struct {
	slot int64
	a, b int64
}

// newWindow returns a window of n buckets of width nanoseconds each.
func newWindow(width int64, n int) *window {
	w := &window{width: max(width, 1), buckets: make([]bucket, max(n, 1))}
	for i := range w.buckets {
		w.buckets[i].slot.Store(math.MinInt64)
	}
	return w
}

// pack makes the increment of a bucket's counts.
func pack(a, b uint64) uint64 { return a<<32 | b&0xffffffff }

func unpack(c uint64) (a, b int64) { return int64(c >> 32), int64(c & 0xffffffff) }

// add counts a and b at time now.
func (w *window) add(now int64, a, b uint64) {
	slot := now / w.width
	bk := &w.buckets[slot%int64(len(w.buckets))]
	if s := bk.slot.Load(); s != slot {
		if s > slot {
			return // a late count for a bucket already reused: drop it
		}
		if bk.slot.CompareAndSwap(s, slot) {
			bk.counts.Store(0)
		}
	}
	bk.counts.Add(pack(a, b))
}

// sum returns the totals over the window ending at now: the closed
// buckets of the last len(buckets)-1 slots and the current one.
func (w *window) sum(now int64) (a, b int64) {
	slot := now / w.width
	c := w.closed.Load()
	if c == nil || c.slot != slot {
		c = w.sumClosed(slot)
		w.closed.Store(c)
	}
	a, b = c.a, c.b
	bk := &w.buckets[slot%int64(len(w.buckets))]
	if bk.slot.Load() == slot && slot >= w.floor.Load() {
		ca, cb := unpack(bk.counts.Load())
		a, b = a+ca, b+cb
	}
	return a, b
}

func (w *window) sumClosed(slot int64) *windowSum {
	c := &windowSum{slot: slot}
	floor := w.floor.Load()
	n := int64(len(w.buckets))
	for i := int64(1); i < n; i++ {
		s := slot - i
		if s < 0 || s < floor {
			break
		}
		bk := &w.buckets[s%n]
		if bk.slot.Load() == s {
			a, b := unpack(bk.counts.Load())
			c.a += a
			c.b += b
		}
	}
	return c
}

// reset forgets everything counted before now.
func (w *window) reset(now int64) {
	slot := now / w.width
	w.floor.Store(slot)
	bk := &w.buckets[slot%int64(len(w.buckets))]
	if bk.slot.Load() == slot {
		bk.counts.Store(0)
	}
	w.closed.Store(nil)
}
