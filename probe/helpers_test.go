package probe

import (
	"sync"
	"testing"
	"time"
)

// fast are prober options for tests: checks every 20ms without jitter.
func fast(opts ...Option) []Option {
	return append([]Option{WithInterval(20 * time.Millisecond), WithJitter(0), WithTimeout(time.Second)}, opts...)
}

// newProber returns a prober closed at the end of the test.
func newProber(t *testing.T, c Checker, opts ...Option) *Prober {
	t.Helper()
	p := New(c, opts...)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// readyTimeout bounds the waits for a state a test needs (a health
// verdict, a number of checks): generous, for a loaded 2-core machine with
// the race detector, where these take well under a second when all is
// right.
const readyTimeout = 30 * time.Second

// waitFor polls cond until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recorder keeps every event a prober delivers.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func record(p *Prober) *recorder {
	r := &recorder{}
	p.Subscribe(func(ev Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	})
	return r
}

// of returns the events of addr so far.
func (r *recorder) of(addr string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.events {
		if ev.Addr == addr {
			out = append(out, ev)
		}
	}
	return out
}

// waitChange waits for the first event of addr at index >= from that
// changed the health to h, and returns its index and all events so far.
func (r *recorder) waitChange(t *testing.T, addr string, h Health, from int) (int, []Event) {
	t.Helper()
	idx := -1
	var evs []Event
	waitFor(t, readyTimeout, addr+" to turn "+h.String(), func() bool {
		evs = r.of(addr)
		for i := from; i < len(evs); i++ {
			if evs[i].HealthChanged && evs[i].Health == h {
				idx = i
				return true
			}
		}
		return false
	})
	return idx, evs
}

// waitChecks waits until addr has had at least n checks and returns its
// status.
func waitChecks(t *testing.T, p *Prober, addr string, n int64) Status {
	t.Helper()
	var st Status
	waitFor(t, readyTimeout, addr+" checks", func() bool {
		var ok bool
		st, ok = p.Status(addr)
		return ok && st.Checks >= n
	})
	return st
}
