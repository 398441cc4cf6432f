package overload

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Throttling configures adaptive client-side throttling, as the Google SRE
// book describes it ("Handling Overload", client-side throttling): over a
// sliding window the client counts the requests it attempted and the
// requests the service accepted, and rejects a new request locally with
// probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// Requests rejected locally count as attempted, so the probability keeps
// growing while the service keeps refusing; once it accepts again, accepts
// grow and the probability falls. What counts as accepted is decided by
// the guard's Classifier (Success and Failure verdicts). Requests are the
// application's: retries and hedges (AcquireRetry) are neither throttled
// nor counted. Zero fields take their defaults.
type Throttling struct {
	// Window is how far back requests and accepts are counted (default
	// DefaultThrottleWindow).
	Window time.Duration `json:"window,omitempty"`
	// Buckets is how many buckets the window slides by (default
	// DefaultThrottleBuckets).
	Buckets int `json:"buckets,omitempty"`
	// K is how many requests per accepted one the service may see
	// before the client rejects locally (default DefaultThrottleK).
	K float64 `json:"k,omitempty"`
	// MaxRejectProbability caps the probability of a local rejection,
	// so that some requests always reach the service and find out that
	// it recovered (default DefaultMaxRejectProbability).
	MaxRejectProbability float64 `json:"maxRejectProbability,omitempty"`
	// Disabled turns throttling off.
	Disabled bool `json:"disabled,omitempty"`
}

// Defaults of Throttling.
const (
	// DefaultThrottleWindow is the SRE book's two minutes: long enough
	// that a burst of refusals is weighed against minutes of history, not
	// seconds. Its price: after an overload the window remembers it for
	// as long, so local rejections fade out over tens of seconds to a
	// minute (see README, "Overload"); shorten it for faster recovery.
	DefaultThrottleWindow = 2 * time.Minute
	// DefaultThrottleBuckets slides the default window by the second.
	DefaultThrottleBuckets = 120
	// DefaultThrottleK is the SRE book's 2: the service may see up to
	// twice the requests it accepts, so it wastes at most as much work
	// rejecting as it does serving. Lower (towards 1.1) is more
	// aggressive; higher lets more doomed requests through.
	DefaultThrottleK = 2
	// DefaultMaxRejectProbability lets at least one request in ten
	// through, as Envoy's admission control caps its rejections (at 80%
	// there): without a cap, a client whose service was down for the
	// whole window rejects nearly every request and needs minutes of
	// trickling accepts to recover after the service is back.
	DefaultMaxRejectProbability = 0.9
)

func (t Throttling) withDefaults() Throttling {
	if t.Window == 0 {
		t.Window = DefaultThrottleWindow
	}
	if t.Buckets == 0 {
		t.Buckets = DefaultThrottleBuckets
	}
	if t.K == 0 {
		t.K = DefaultThrottleK
	}
	if t.MaxRejectProbability == 0 {
		t.MaxRejectProbability = DefaultMaxRejectProbability
	}
	return t
}

func (t Throttling) validate() error {
	switch {
	case t.Window < time.Second:
		return fmt.Errorf("overload: throttling: window %v must be at least 1s", t.Window)
	case t.Buckets < 1 || t.Buckets > 3600:
		return fmt.Errorf("overload: throttling: buckets %d must be within [1, 3600]", t.Buckets)
	case t.Window/time.Duration(t.Buckets) < time.Millisecond:
		return fmt.Errorf("overload: throttling: window %v over %d buckets makes buckets shorter than 1ms", t.Window, t.Buckets)
	case t.K < 1:
		return fmt.Errorf("overload: throttling: k %v must be at least 1 (below, a healthy service would be throttled)", t.K)
	case t.MaxRejectProbability <= 0 || t.MaxRejectProbability > 1:
		return fmt.Errorf("overload: throttling: maxRejectProbability %v must be within (0, 1]", t.MaxRejectProbability)
	}
	return nil
}

// throttle is the state of adaptive throttling for one service.
type throttle struct {
	cfg  Throttling
	w    *window // a: requests, b: accepts
	rand func() float64
}

func newThrottle(cfg Throttling) *throttle {
	return &throttle{
		cfg:  cfg,
		w:    newWindow(int64(cfg.Window)/int64(cfg.Buckets), cfg.Buckets),
		rand: rand.Float64,
	}
}

// probability returns the reject probability at now and the counts it
// comes from.
func (t *throttle) probability(now int64) (p float64, requests, accepts int64) {
	requests, accepts = t.w.sum(now)
	return rejectProbability(requests, accepts, t.cfg.K, t.cfg.MaxRejectProbability), requests, accepts
}

// rejectProbability is the SRE formula, capped.
func rejectProbability(requests, accepts int64, k, maxP float64) float64 {
	p := (float64(requests) - k*float64(accepts)) / float64(requests+1)
	return min(max(p, 0), maxP)
}

// admit decides whether a request goes out; a rejected one is counted as
// a request at once (it will not be Done).
func (t *throttle) admit(now int64) (ok bool, p float64, requests, accepts int64) {
	p, requests, accepts = t.probability(now)
	if p > 0 && t.rand() < p {
		t.w.add(now, 1, 0)
		return false, p, requests, accepts
	}
	return true, p, requests, accepts
}

// record counts a finished request.
func (t *throttle) record(now int64, v Verdict) {
	switch {
	case v == Ignored:
	case v.accepted():
		t.w.add(now, 1, 1)
	default:
		t.w.add(now, 1, 0)
	}
}

// detail explains a rejection.
func (t *throttle) detail(p float64, requests, accepts int64) string {
	return fmt.Sprintf("rejected locally with probability %.2f: the service accepted %d of the last %d requests (over %v, k=%g)",
		p, accepts, requests, t.cfg.Window, t.cfg.K)
}
