package overload

import "time"

// Clock tells the time. The guard reads it on every request, so it must be
// cheap and safe for concurrent use; tests pass a fake one (WithClock) to
// step a breaker through its states without sleeping. It must not go
// backwards.
type Clock interface {
	Now() time.Time
}

// timebase turns a Clock into monotonic nanoseconds since the guard was
// built, the unit every window and timer of this package counts in.
type timebase struct {
	clock Clock // nil: the wall clock, read through its monotonic reading
	epoch time.Time
}

func newTimebase(c Clock) timebase {
	if c == nil {
		return timebase{epoch: time.Now()}
	}
	return timebase{clock: c, epoch: c.Now()}
}

// now returns the nanoseconds since the epoch.
func (t *timebase) now() int64 {
	var d time.Duration
	if t.clock == nil {
		d = time.Since(t.epoch)
	} else {
		d = t.clock.Now().Sub(t.epoch)
	}
	return int64(max(d, 0))
}

// at returns the wall time of a now() value, for events and logs.
func (t *timebase) at(ns int64) time.Time { return t.epoch.Add(time.Duration(ns)) }
