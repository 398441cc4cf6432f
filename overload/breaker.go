package overload

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Strategy is what trips a circuit breaker: Sentinel's three strategies.
type Strategy string

// Strategies.
const (
	// SlowCallRatio opens when, over the stat window, the share of calls
	// slower than MaxRT reaches Threshold (Sentinel's SlowRequestRatio).
	SlowCallRatio Strategy = "slow_call_ratio"
	// ErrorRatio opens when the share of failed calls (Failure and
	// NoAnswer verdicts) reaches Threshold.
	ErrorRatio Strategy = "error_ratio"
	// ErrorCount opens when the number of failed calls reaches
	// Threshold.
	ErrorCount Strategy = "error_count"
)

// BreakerRule configures one circuit breaker, as a Sentinel circuit
// breaking rule does. A breaker is closed (calls pass) until, over the
// last StatWindow and with at least MinRequests calls counted, its
// strategy's figure reaches Threshold; it then opens: every call fails at
// once with ErrBreakerOpen for RetryTimeout. Then it is half-open: up to
// Probes calls go through as probes; once Probes of them have succeeded
// (for SlowCallRatio: succeeded within MaxRT) it closes, with fresh
// statistics; the first probe that fails opens it again for RetryTimeout.
//
// Zero fields take their defaults, which follow Sentinel's examples and
// go-zero (README, "Overload", compares them).
type BreakerRule struct {
	// Name labels the breaker in metrics, events and errors (default:
	// the strategy). Names are unique within a guard's service rules and
	// within its endpoint rules.
	Name string `json:"name,omitempty"`
	// Strategy is required.
	Strategy Strategy `json:"strategy"`
	// Threshold is the slow-call or error ratio, within (0, 1], or the
	// error count, at least 1, at which the breaker opens (defaults
	// DefaultSlowCallRatio, DefaultErrorRatio, DefaultErrorCount).
	Threshold float64 `json:"threshold,omitempty"`
	// MaxRT is the latency above which a call counts as slow
	// (SlowCallRatio only; default DefaultMaxRT).
	MaxRT time.Duration `json:"maxRT,omitempty"`
	// MinRequests is how many calls the stat window must hold before the
	// breaker may open (default DefaultMinRequests).
	MinRequests int `json:"minRequests,omitempty"`
	// StatWindow is the window calls are counted over (default
	// DefaultStatWindow), in Buckets buckets (default
	// DefaultStatBuckets).
	StatWindow time.Duration `json:"statWindow,omitempty"`
	Buckets    int           `json:"buckets,omitempty"`
	// RetryTimeout is how long the breaker stays open before it lets
	// probes through (default DefaultRetryTimeout).
	RetryTimeout time.Duration `json:"retryTimeout,omitempty"`
	// Probes is how many probes a half-open breaker lets through, and how
	// many must succeed for it to close (default DefaultProbes).
	Probes int `json:"probes,omitempty"`
}

// Defaults of BreakerRule.
const (
	// DefaultMaxRT is the seed's figure: a call slower than 800 ms has
	// outlived most interactive budgets. Set it from your latency
	// objective.
	DefaultMaxRT = 800 * time.Millisecond
	// DefaultSlowCallRatio and DefaultErrorRatio open at half the calls,
	// as Sentinel's examples, Hystrix and resilience4j do: less would
	// open on a bad minority, more would wait until nearly everything
	// fails.
	DefaultSlowCallRatio = 0.5
	DefaultErrorRatio    = 0.5
	// DefaultErrorCount is 20 failed calls in the stat window (2 a second
	// over the default window).
	DefaultErrorCount = 20
	// DefaultMinRequests is Sentinel's examples' 10: fewer calls make a
	// ratio noise.
	DefaultMinRequests = 10
	// DefaultStatWindow is go-zero's breaker window, 10 s in 10 buckets:
	// long enough to hold MinRequests of a slow service (calls are
	// counted when they end), short enough to open within seconds.
	DefaultStatWindow  = 10 * time.Second
	DefaultStatBuckets = 10
	// DefaultRetryTimeout is Hystrix's sleep window, 5 s (Sentinel's
	// examples use 3 s): each probe round costs a few slow calls, so a
	// probe round every few seconds is cheap, and recovery is noticed
	// within seconds.
	DefaultRetryTimeout = 5 * time.Second
	// DefaultProbes is 3: more than one, so that one lucky answer does not
	// close the breaker, few enough that a still-broken service costs
	// few calls.
	DefaultProbes = 3
)

func (r BreakerRule) withDefaults() BreakerRule {
	if r.Name == "" {
		r.Name = string(r.Strategy)
	}
	if r.Threshold == 0 {
		switch r.Strategy {
		case SlowCallRatio:
			r.Threshold = DefaultSlowCallRatio
		case ErrorRatio:
			r.Threshold = DefaultErrorRatio
		case ErrorCount:
			r.Threshold = DefaultErrorCount
		}
	}
	if r.MaxRT == 0 && r.Strategy == SlowCallRatio {
		r.MaxRT = DefaultMaxRT
	}
	if r.MinRequests == 0 {
		r.MinRequests = DefaultMinRequests
	}
	if r.StatWindow == 0 {
		r.StatWindow = DefaultStatWindow
	}
	if r.Buckets == 0 {
		r.Buckets = DefaultStatBuckets
	}
	if r.RetryTimeout == 0 {
		r.RetryTimeout = DefaultRetryTimeout
	}
	if r.Probes == 0 {
		r.Probes = DefaultProbes
	}
	return r
}

func (r BreakerRule) validate() error {
	name := r.Name
	if name == "" {
		name = string(r.Strategy)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("overload: breaker %q: "+format, append([]any{name}, args...)...)
	}
	switch r.Strategy {
	case SlowCallRatio, ErrorRatio:
		if r.Threshold < 0 || r.Threshold > 1 {
			return bad("threshold %v must be a ratio within (0, 1]", r.Threshold)
		}
	case ErrorCount:
		if r.Threshold < 0 || (r.Threshold != 0 && r.Threshold < 1) {
			return bad("threshold %v must be a count of at least 1", r.Threshold)
		}
	case "":
		return bad("strategy is required (%s, %s or %s)", SlowCallRatio, ErrorRatio, ErrorCount)
	default:
		return bad("unknown strategy %q (want %s, %s or %s)", r.Strategy, SlowCallRatio, ErrorRatio, ErrorCount)
	}
	switch {
	case r.MaxRT < 0:
		return bad("maxRT %v must not be negative", r.MaxRT)
	case r.MaxRT > 0 && r.Strategy != SlowCallRatio:
		return bad("maxRT applies to %s only", SlowCallRatio)
	case r.MinRequests < 0:
		return bad("minRequests %d must not be negative", r.MinRequests)
	case r.StatWindow != 0 && r.StatWindow < 100*time.Millisecond:
		return bad("statWindow %v must be at least 100ms", r.StatWindow)
	case r.Buckets < 0 || r.Buckets > 1000:
		return bad("buckets %d must be within [1, 1000]", r.Buckets)
	case r.RetryTimeout < 0:
		return bad("retryTimeout %v must not be negative", r.RetryTimeout)
	case r.Probes < 0 || r.Probes > 1000:
		return bad("probes %d must be within [1, 1000]", r.Probes)
	}
	return nil
}

// State is a circuit breaker's state. Its numeric value is the value of
// the smartroute_overload_breaker_state gauge.
type State uint8

// States, numbered as Sentinel numbers them.
const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return "unknown"
}

// StateChange is a breaker's move from one state to another, as given to
// the WithStateListener callback.
type StateChange struct {
	Service  string
	Endpoint string // "" for a service breaker
	Breaker  string // the rule's name
	From, To State
	// Value is what moved it: for Closed→Open, the slow-call or error
	// ratio or the error count that reached the threshold; for
	// HalfOpen→Open, the verdict's latency in seconds (slow call) or 1
	// (failed probe); otherwise 0.
	Value float64
	At    time.Time
}

// breaker is one rule's state machine in one scope. Closed is read with
// one atomic load; transitions take mu and are rare. Probes are admitted
// by compare-and-swap on the current half-open period and its count, so
// that a probe from an earlier period can never free a slot of a later
// one.
type breaker struct {
	rule  BreakerRule
	scope *scope
	stat  *window // a: calls, b: slow or failed calls
	maxRT int64

	state     atomic.Uint32 // State
	openUntil atomic.Int64  // while Open: when probes may start
	probes    atomic.Uint64 // half-open period << 32 | probes admitted in it

	mu     sync.Mutex // transitions, probe results
	passed int        // probes passed in the current period (mu)
}

func newBreaker(r BreakerRule, s *scope) *breaker {
	return &breaker{
		rule:  r,
		scope: s,
		stat:  newWindow(int64(r.StatWindow)/int64(r.Buckets), r.Buckets),
		maxRT: int64(r.MaxRT),
	}
}

func (b *breaker) current() State { return State(b.state.Load()) }

// allow admits a call at now. probe is set when the call is a half-open
// probe of period; retryAfter says how long a refused caller should wait.
func (b *breaker) allow(now int64) (ok, probe bool, period uint32, retryAfter time.Duration) {
	switch b.current() {
	case Closed:
		return true, false, 0, 0
	case Open:
		until := b.openUntil.Load()
		if now < until {
			return false, false, 0, time.Duration(until - now)
		}
		b.toHalfOpen(now)
	}
	for {
		p := b.probes.Load()
		if b.current() != HalfOpen {
			// Closed or opened again meanwhile: decide afresh.
			if b.current() == Closed {
				return true, false, 0, 0
			}
			return false, false, 0, time.Duration(max(b.openUntil.Load()-now, 0))
		}
		if int(uint32(p)) >= b.rule.Probes {
			return false, false, 0, 0
		}
		if b.probes.CompareAndSwap(p, p+1) {
			return true, true, uint32(p >> 32), 0
		}
	}
}

// wouldAllow reports, without taking anything, whether allow would admit
// a call now.
func (b *breaker) wouldAllow(now int64) bool {
	switch b.current() {
	case Closed:
		return true
	case Open:
		return now >= b.openUntil.Load()
	}
	return int(uint32(b.probes.Load())) < b.rule.Probes
}

// bad reports whether a call counts against the breaker.
func (b *breaker) bad(v Verdict, latency time.Duration) bool {
	if b.rule.Strategy == SlowCallRatio {
		return int64(latency) > b.maxRT
	}
	return v == Failure || v == NoAnswer
}

// done records a finished call.
func (b *breaker) done(now int64, v Verdict, latency time.Duration, probe bool, period uint32) {
	if probe {
		b.probeDone(now, v, latency, period)
		return
	}
	if v == Ignored || v == Overloaded || b.current() != Closed {
		// Calls admitted before the breaker opened say nothing about
		// the service after it; probes decide.
		return
	}
	var bad uint64
	if b.bad(v, latency) {
		bad = 1
	}
	b.stat.add(now, 1, bad)
	calls, nbad := b.stat.sum(now)
	if calls < int64(b.rule.MinRequests) {
		return
	}
	value := float64(nbad)
	if b.rule.Strategy != ErrorCount {
		value /= float64(calls)
	}
	if value >= b.rule.Threshold {
		b.mu.Lock()
		if b.current() == Closed {
			b.toOpenLocked(now, Closed, value)
		}
		b.mu.Unlock()
	}
}

// probeDone records a probe's result.
func (b *breaker) probeDone(now int64, v Verdict, latency time.Duration, period uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.probes.Load()
	if b.current() != HalfOpen || uint32(p>>32) != period {
		return // a probe of an earlier period
	}
	switch {
	case v == Ignored:
		// Give the probe back: another call may try. (Admissions only
		// grow the count within a period, and the period cannot change
		// while mu is held.)
		for uint32(p) > 0 && !b.probes.CompareAndSwap(p, p-1) {
			p = b.probes.Load()
		}
	case v == Success && !b.bad(v, latency):
		b.passed++
		if b.passed >= b.rule.Probes {
			b.toClosedLocked(now)
		}
	default:
		value := 1.0
		if b.rule.Strategy == SlowCallRatio && b.bad(v, latency) {
			value = latency.Seconds()
		}
		b.toOpenLocked(now, HalfOpen, value)
	}
}

// toHalfOpen moves an Open breaker whose retry timeout has passed to
// HalfOpen, starting a new probe period.
func (b *breaker) toHalfOpen(now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current() != Open || now < b.openUntil.Load() {
		return
	}
	period := uint32(b.probes.Load()>>32) + 1
	b.probes.Store(uint64(period) << 32)
	b.passed = 0
	b.state.Store(uint32(HalfOpen))
	b.scope.changed(b, Open, HalfOpen, 0, now)
}

func (b *breaker) toOpenLocked(now int64, from State, value float64) {
	b.openUntil.Store(now + int64(b.rule.RetryTimeout))
	b.state.Store(uint32(Open))
	b.scope.changed(b, from, Open, value, now)
}

func (b *breaker) toClosedLocked(now int64) {
	b.stat.reset(now)
	b.state.Store(uint32(Closed))
	b.scope.changed(b, HalfOpen, Closed, 0, now)
}

// detail explains why the breaker refused a call.
func (b *breaker) detail(retryAfter time.Duration) string {
	r := &b.rule
	var trigger string
	switch r.Strategy {
	case SlowCallRatio:
		trigger = fmt.Sprintf("%.0f%% of calls slower than %v", r.Threshold*100, r.MaxRT)
	case ErrorRatio:
		trigger = fmt.Sprintf("%.0f%% of calls failed", r.Threshold*100)
	case ErrorCount:
		trigger = fmt.Sprintf("%.0f calls failed", r.Threshold)
	}
	if b.current() == HalfOpen {
		return fmt.Sprintf("breaker %q half-open, its %d probes in flight (it opened when %s within %v)", r.Name, r.Probes, trigger, r.StatWindow)
	}
	return fmt.Sprintf("breaker %q open for %v more (it opened when %s within %v)", r.Name, retryAfter.Round(time.Millisecond), trigger, r.StatWindow)
}
