package client

import (
	"context"
	"sync/atomic"
	"time"
)

// Timing of the coarse clock and of the work it drives.
const (
	// coarseTick is the resolution of the pick path's clock: fine enough
	// for decays measured in hundreds of milliseconds and for the age of a
	// request that is late by more than a tick, coarse enough that the
	// goroutine keeping it costs a fraction of a percent of a core.
	coarseTick = time.Millisecond
	// refreshTicks is how many ticks apart the table's background refresh
	// runs (exploration, candidate weights): 10 ms, several times within
	// the 200 ms in which a backend that became fast must win its share.
	refreshTicks = 10
	// parkAfterRefreshes parks the clock goroutine after this many refresh
	// periods without a read: a client without traffic costs nothing.
	parkAfterRefreshes = 100
)

// coarseClock is the monotonic clock of the pick path. Reading the precise
// clock costs tens of nanoseconds on common virtual machines, more than a
// whole pick may take; a goroutine instead stores the time every
// coarseTick while picks happen, and readers load it. The goroutine parks
// when nobody read the clock for a second; a reader that finds it parked
// reads the precise clock and wakes it.
//
// Every refreshTicks ticks it also calls refresh: the table's periodic
// work (exploration, candidate weights), done off the request path, as
// grpc-go's weighted_round_robin rebuilds its scheduler on a timer.
type coarseClock struct {
	precise func() int64
	refresh func(now int64)

	now    atomic.Int64
	active atomic.Bool
	used   atomic.Bool
	wake   chan struct{}
}

func newCoarseClock(precise func() int64, refresh func(now int64)) *coarseClock {
	return &coarseClock{precise: precise, refresh: refresh, wake: make(chan struct{}, 1)}
}

// Now returns the time to within about coarseTick.
func (c *coarseClock) Now() int64 {
	if c.active.Load() {
		if !c.used.Load() {
			c.used.Store(true)
		}
		return c.now.Load()
	}
	now := c.precise()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return now
}

// run keeps the clock until ctx ends.
func (c *coarseClock) run(ctx context.Context) {
	ticker := time.NewTicker(coarseTick)
	ticker.Stop()
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.now.Store(c.precise())
		c.used.Store(true)
		c.active.Store(true)
		ticker.Reset(coarseTick)
		for ticks, idle := 1, 0; idle < parkAfterRefreshes; ticks++ {
			select {
			case <-ctx.Done():
				c.active.Store(false)
				return
			case <-ticker.C:
			}
			now := c.precise()
			c.now.Store(now)
			if ticks%refreshTicks != 0 {
				continue
			}
			if c.refresh != nil {
				c.refresh(now)
			}
			if c.used.Swap(false) {
				idle = 0
			} else {
				idle++
			}
		}
		ticker.Stop()
		c.active.Store(false)
	}
}
