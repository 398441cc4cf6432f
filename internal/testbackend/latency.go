package testbackend

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// delay is a latency model that can be changed while requests run.
type delay struct {
	base  atomic.Int64  // time.Duration
	tailP atomic.Uint64 // float64 bits
	tailK atomic.Uint64 // float64 bits
}

func (d *delay) set(base time.Duration) { d.base.Store(int64(base)) }

func (d *delay) setTail(p, k float64) {
	d.tailP.Store(math.Float64bits(p))
	d.tailK.Store(math.Float64bits(k))
}

// draw returns the delay of one answer.
func (d *delay) draw() time.Duration {
	base := time.Duration(d.base.Load())
	if base <= 0 {
		return 0
	}
	if p := math.Float64frombits(d.tailP.Load()); p > 0 && rand.Float64() < p {
		return time.Duration(float64(base) * math.Float64frombits(d.tailK.Load()))
	}
	return base
}

// wait sleeps for one drawn delay or until ctx is done.
func (d *delay) wait(ctx context.Context) error {
	dur := d.draw()
	if dur <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// workers bounds concurrent work; a nil *workers has no bound.
type workers chan struct{}

func newWorkers(n int) workers {
	if n <= 0 {
		return nil
	}
	return make(workers, n)
}

func (w workers) acquire(ctx context.Context) error {
	if w == nil {
		return nil
	}
	select {
	case w <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w workers) release() {
	if w != nil {
		<-w
	}
}
