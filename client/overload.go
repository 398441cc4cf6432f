package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/overload"
)

// Overload protection in the client: a guard of package overload for the
// client's service, asked before every attempt (HTTP) or unary RPC (the
// gRPC picker) and told how it ended, and its per-endpoint state kept with
// the table's endpoints.

// WithOverload turns on overload protection for the client's service
// (package overload; default: off). opts are the overload package's
// options, for example
//
//	client.WithOverload(
//		overload.WithBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: 800 * time.Millisecond}),
//		overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}),
//		overload.WithEndpointMaxRequests(64))
//
// Without options it throttles adaptively and bounds the requests and
// retries in flight with the overload package's defaults, and has no
// breakers. The guard logs with the client's logger and registers its
// metrics (smartroute_overload_*) on the client's registerer, per endpoint
// with WithPerEndpointMetrics, unless opts say otherwise. Several
// WithOverload add up, later options winning.
//
// What it does:
//
//   - Every attempt (the first, each retry and each hedge) asks the
//     service first: an open service breaker, throttling or a full limit
//     refuses it at once with an *overload.RejectedError (ErrBreakerOpen,
//     ErrThrottled, ErrConcurrencyLimit), or WithOverloadFallback's
//     answer. Retries and hedges count against Limits.MaxRetries; a retry
//     or hedge the guard refuses is not sent, and the answer before it
//     stands. A hedge never waits for a slot (Limits.MaxPending).
//   - Then the picked endpoint: its breakers (WithEndpointBreakers) and
//     its limit (WithEndpointMaxRequests). An endpoint that refuses is
//     passed over for another, a few times, and the request fails with
//     the endpoint's refusal when every pick refused.
//   - An endpoint whose breaker opens leaves the rotation as an ejected
//     one does, within the panic threshold, until the breaker's retry
//     timeout; then requests may pick it again and the first ones probe it
//     (half-open). In panic mode an endpoint is sent to whatever its
//     breaker says, within its limit.
//   - Refused requests never count against an endpoint: outlier detection
//     never sees them.
//
// Endpoints shows each endpoint's breakers, Pick the endpoints it passed
// over, and Overload the service's guard.
func WithOverload(opts ...overload.Option) Option {
	return func(c *config) {
		c.overloadOn = true
		c.overloadOpts = append(c.overloadOpts, opts...)
	}
}

// WithOverloadFallback answers the HTTP requests that overload protection
// refuses (WithOverload) with f instead of the *overload.RejectedError: f
// gets the request (its body already closed) and the error, and its
// response and error are what RoundTrip returns; for example a cached
// answer, or a 503 with Retry-After for a proxy. errors.Is(err,
// overload.ErrBreakerOpen) tells a service or endpoint breaker from
// throttling and limits; the error's Endpoint is "" when the service as a
// whole refused. For gRPC, see OverloadFallbackInterceptor.
func WithOverloadFallback(f func(req *http.Request, err error) (*http.Response, error)) Option {
	return func(c *config) { c.overloadFallback = f }
}

// Overload returns the state of the client's overload protection: the
// throttling probability and the counts behind it, the requests and
// retries in flight, the service breakers (the zero Status without
// WithOverload). Endpoints has the endpoints' breakers.
func (c *Client) Overload() overload.Status { return c.table.ov.guard.Status() }

// Guard returns the client's overload guard (nil without WithOverload),
// for diagnosis tools: the client asks it for every attempt, and its
// breakers' changes reach the table whoever caused them, so a tool may
// feed it outcomes the client did not see (lbprobe judges its checks by
// an endpoint breaker this way). A caller that takes a ticket must end it.
func (c *Client) Guard() *overload.Guard { return c.table.ov.guard }

// tableOverload is the table's part of overload protection.
type tableOverload struct {
	guard *overload.Guard // nil without WithOverload

	// dirty holds the endpoints whose breakers changed since run last
	// looked: breakers report changes on the request's goroutine, under
	// their lock; the table's goroutine rebuilds the snapshot.
	mu    sync.Mutex
	dirty map[string]struct{}
}

// endpointOverload is an endpoint's part of overload protection.
type endpointOverload struct {
	h *overload.Endpoint // nil without WithOverload; set before the endpoint is published
	// openUntil is when the endpoint's open breakers let probes through
	// (table clock), 0 while none is open: until then the endpoint is out
	// of rotation (excludedBreakerOpen). openWhy names the breakers.
	openUntil atomic.Int64
	openWhy   atomic.Pointer[string]
}

// breakerOpen reports whether ep's breakers hold it out at now.
func (ep *endpoint) breakerOpen(now int64) bool {
	until := ep.ov.openUntil.Load()
	return until != 0 && now < until
}

// setGuard builds the guard of t's service (nil without WithOverload),
// before any endpoint is added.
func (t *table) setGuard(service string) error {
	cfg := t.cfg
	if !cfg.overloadOn {
		return nil
	}
	opts := []overload.Option{overload.WithLogger(cfg.logger)}
	if cfg.registerer != nil {
		opts = append(opts, overload.WithRegisterer(cfg.registerer))
	}
	if cfg.perEndpointMetrics {
		opts = append(opts, overload.WithPerEndpointMetrics())
	}
	opts = append(opts, cfg.overloadOpts...)
	opts = append(opts, overload.WithStateListener(t.breakerChanged))
	g, err := overload.New(service, opts...)
	if err != nil {
		return err
	}
	t.ov.guard = g
	return nil
}

// breakerChanged notes that an endpoint breaker changed state and wakes
// the table's goroutine to apply it (off the request path).
func (t *table) breakerChanged(ev overload.StateChange) {
	if ev.Endpoint == "" {
		return
	}
	t.ov.mu.Lock()
	if t.ov.dirty == nil {
		t.ov.dirty = make(map[string]struct{})
	}
	t.ov.dirty[ev.Endpoint] = struct{}{}
	t.ov.mu.Unlock()
	t.wakeLocked()
}

// addEndpointLocked gives a new endpoint its state in the guard.
func (t *table) addEndpointLocked(ep *endpoint) {
	if g := t.ov.guard; g != nil {
		ep.ov.h = g.Endpoint(ep.addr)
	}
}

// removeEndpointLocked has the guard forget a removed endpoint.
func (t *table) removeEndpointLocked(ep *endpoint) {
	if g := t.ov.guard; g != nil {
		g.Forget(ep.addr)
	}
}

// syncBreakersLocked applies the breaker changes reported since the last
// call, and puts back in rotation the endpoints whose breakers' retry
// timeout has passed (their next requests probe them). It reports whether
// eligibility changed, and lowers *next to the next retry timeout.
func (t *table) syncBreakersLocked(now int64, next *int64) (changed bool) {
	if t.ov.guard == nil {
		return false
	}
	t.ov.mu.Lock()
	dirty := t.ov.dirty
	t.ov.dirty = nil
	t.ov.mu.Unlock()
	for addr := range dirty {
		ep := t.endpoints[addr]
		if ep == nil {
			continue
		}
		until, why := openUntil(ep.ov.h.Status(), now)
		if until == ep.ov.openUntil.Load() {
			continue
		}
		ep.ov.openWhy.Store(&why)
		ep.ov.openUntil.Store(until)
		changed = true
		if until != 0 { // the guard has logged the change itself
			t.cfg.logger.Debug("client: endpoint out of rotation: circuit breaker open", "endpoint", addr, "breaker", why,
				"for", time.Duration(until-now).Round(time.Millisecond))
		}
	}
	for _, ep := range t.sorted {
		until := ep.ov.openUntil.Load()
		switch {
		case until == 0:
		case now >= until:
			ep.ov.openUntil.Store(0)
			ep.activeSince.Store(now) // back in rotation: slow start again
			changed = true
			t.cfg.logger.Debug("client: endpoint back in rotation: its circuit breaker lets probes through", "endpoint", ep.addr)
		case *next == 0 || until < *next:
			*next = until
		}
	}
	return changed
}

// openUntil returns when the open breakers of st let probes through, on
// the table's clock at now (0 when none is open), and their names.
func openUntil(st overload.EndpointStatus, now int64) (int64, string) {
	var until int64
	var names []string
	for _, b := range st.Breakers {
		if b.State != overload.Open {
			continue
		}
		d := time.Until(b.OpenUntil)
		if d <= 0 {
			continue
		}
		until = max(until, now+int64(d))
		names = append(names, fmt.Sprintf("%q", b.Name))
	}
	return until, strings.Join(names, ", ")
}

// poolOf returns the pool of s that ep belongs to (stable or canary).
func (s *snapshot) poolOf(ep *endpoint) *pool {
	if c := s.cfg.canary; c != nil && matches(ep.attrs.Load().Labels, c.Labels) {
		return s.canary
	}
	return s.stable
}

// admit asks ep's breakers and limit to admit a request. In panic mode an
// endpoint whose breaker refuses is sent to all the same, within its
// limit: the panic rule treats breakers as it treats ejections.
func (s *snapshot) admit(ctx context.Context, ep *endpoint) (overload.Ticket, error) {
	h := ep.ov.h
	if h == nil {
		return overload.Ticket{}, nil
	}
	tk, err := h.Acquire(ctx)
	if err != nil && errors.Is(err, overload.ErrBreakerOpen) && s.poolOf(ep).panic {
		return h.AcquireLimit(ctx)
	}
	return tk, err
}

// maxSkips bounds the picked endpoints one request passes over because
// their breakers or limits refused it. Refusal is checked on the endpoint
// a pick chose, not over the whole pool, so that a pick stays cheap; an
// endpoint at its limit is thus ineligible for the pick, and the request
// fails only when every one of a few picks refused.
const maxSkips = 3

// pickAdmitted picks an endpoint for pr that its breakers and limit admit
// (with WithOverload), and returns it with its ticket. It returns a nil
// endpoint and the last refusal (nil when nothing was eligible) when no
// pick was admitted.
func (s *snapshot) pickAdmitted(ctx context.Context, pr *pickRequest) (*endpoint, overload.Ticket, error) {
	saved := pr.ntried
	defer func() { pr.ntried = saved }() // skipped endpoints are not tried ones
	var last error
	for skip := 0; ; skip++ {
		ep := s.pick(pr)
		if ep == nil {
			return nil, overload.Ticket{}, last
		}
		tk, err := s.admit(ctx, ep)
		if err == nil {
			return ep, tk, nil
		}
		ep.hot.exploring.Store(false) // picked, not sent
		last = err
		if skip == maxSkips {
			return nil, overload.Ticket{}, err
		}
		pr.addTried(ep)
	}
}

// admission is what overload protection admitted one attempt with: a
// ticket of the service and one of the endpoint. The zero admission (no
// guard) does nothing.
type admission struct {
	svc, ep overload.Ticket
	guarded bool
}

// done tells the guard how the attempt ended.
func (a admission) done(o overload.Outcome) {
	if a.guarded {
		a.ep.Done(o)
		a.svc.Done(o)
	}
}

// release gives the tickets of an attempt that was not sent back.
func (a admission) release() {
	if a.guarded {
		a.ep.Release()
		a.svc.Release()
	}
}

// noWait is the context of admissions that must not wait for a slot (a
// hedge, a gRPC pick): a context that has already ended never waits.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// acquireService asks the guard to admit one attempt to the service.
func acquireService(ctx context.Context, g *overload.Guard, retry bool) (admission, error) {
	var tk overload.Ticket
	var err error
	if retry {
		tk, err = g.AcquireRetry(ctx)
	} else {
		tk, err = g.Acquire(ctx)
	}
	if err != nil {
		return admission{}, err
	}
	return admission{svc: tk, guarded: true}, nil
}

// pickAdmitted picks an endpoint for one attempt of a request under ctx
// and, with WithOverload, has the guard admit the attempt: the service
// first, then the endpoint (passing over endpoints that refuse). retry
// marks a retry or a hedge (as does overload.RetryContext); a hedge never
// waits for a slot of the service's limit (Limits.MaxPending). It returns
// a nil endpoint and nil error when no endpoint is eligible, and the
// guard's *overload.RejectedError when it refuses.
func (c *Client) pickAdmitted(ctx context.Context, pr *pickRequest, retry, hedge bool) (*endpoint, admission, error) {
	g := c.table.ov.guard
	if g == nil {
		return c.pick(pr), admission{}, nil
	}
	wait := ctx
	if hedge {
		wait = noWait
	}
	adm, err := acquireService(wait, g, retry || overload.IsRetryContext(ctx))
	if err != nil {
		return nil, admission{}, err
	}
	pr.now = c.table.clock.Now()
	ep, tk, err := c.table.snapshot().pickAdmitted(noWait, pr)
	if ep == nil {
		adm.release()
		return nil, admission{}, err
	}
	c.m.picks.Inc()
	adm.ep = tk
	return ep, adm, nil
}

// errAttemptTimedOut is what the guard hears of an attempt that ran past
// its per-try timeout: the endpoint did not answer in time (NoAnswer), not
// a caller who gave up.
var errAttemptTimedOut = fmt.Errorf("client: attempt timed out (per-try timeout): %w", context.DeadlineExceeded)

// overloadOutcome is what an HTTP attempt tells the guard: its latency to
// the response headers, its status or its error.
func overloadOutcome(ctx context.Context, resp *http.Response, err error, latency time.Duration) overload.Outcome {
	o := overload.Outcome{Latency: max(latency, 1), Err: err}
	if resp != nil {
		o.Status = resp.StatusCode
	}
	if err != nil && errors.Is(context.Cause(ctx), errPerTryTimeout) {
		o.Err = errAttemptTimedOut
	}
	return o
}

// rejected reports whether err is overload protection's refusal.
func rejected(err error) bool {
	var rej *overload.RejectedError
	return err != nil && errors.As(err, &rej)
}

// SkippedEndpoint is an endpoint a pick passed over because its overload
// protection would refuse the request (WithOverload): a breaker open or
// half-open with its probes taken, or its requests in flight at their
// limit.
type SkippedEndpoint struct {
	Addr string
	Why  string
}

// pickAllowed is pickAdmitted for Client.Pick: it takes nothing and says
// why it passed endpoints over.
func (s *snapshot) pickAllowed(pr *pickRequest) (*endpoint, []SkippedEndpoint) {
	saved := pr.ntried
	defer func() { pr.ntried = saved }()
	var skipped []SkippedEndpoint
	for skip := 0; ; skip++ {
		ep := s.pick(pr)
		if ep == nil {
			return nil, skipped
		}
		why := s.refusal(ep)
		if why == "" {
			return ep, skipped
		}
		skipped = append(skipped, SkippedEndpoint{Addr: ep.addr, Why: why})
		if skip == maxSkips {
			return nil, skipped
		}
		pr.addTried(ep)
	}
}

// refusal says why ep's overload protection would refuse a request now,
// "" when it would admit it.
func (s *snapshot) refusal(ep *endpoint) string {
	h := ep.ov.h
	if h == nil || h.Allow() {
		return ""
	}
	st := h.Status()
	if st.MaxRequests > 0 && st.InFlight >= int64(st.MaxRequests) {
		return fmt.Sprintf("at its limit of %d requests in flight", st.MaxRequests)
	}
	if s.poolOf(ep).panic {
		return "" // panic mode: sent to whatever its breakers say
	}
	for _, b := range st.Breakers {
		switch b.State {
		case overload.Open:
			return fmt.Sprintf("circuit breaker %q open", b.Name)
		case overload.HalfOpen:
			return fmt.Sprintf("circuit breaker %q half-open, its probes in flight", b.Name)
		}
	}
	return "refused by its overload protection"
}

// breakerInfo fills the breaker fields of an EndpointInfo.
func (ep *endpoint) breakerInfo(info *EndpointInfo) {
	if ep.ov.h == nil {
		return
	}
	st := ep.ov.h.Status()
	info.MaxRequests = st.MaxRequests
	info.Breakers = st.Breakers
	for _, b := range st.Breakers {
		info.Breaker = max(info.Breaker, b.State)
	}
}

// breakerWhy is the Why of an endpoint its breakers hold out at now.
func (ep *endpoint) breakerWhy(now int64) string {
	why := "circuit breaker open"
	if names := ep.ov.openWhy.Load(); names != nil && *names != "" {
		why = "circuit breaker " + *names + " open"
	}
	if until := ep.ov.openUntil.Load(); until > now {
		why += fmt.Sprintf(" for %v more", time.Duration(until-now).Round(time.Millisecond))
	}
	return why
}

// serviceRefusal says why the service's guard refuses every request now
// ("" when it does not): an open service breaker.
func (c *Client) serviceRefusal() string {
	for _, b := range c.Overload().Breakers {
		if b.State == overload.Open && time.Until(b.OpenUntil) > 0 {
			return fmt.Sprintf("the service's circuit breaker %q is open for %v more: requests are refused at once",
				b.Name, time.Until(b.OpenUntil).Round(time.Millisecond))
		}
	}
	return ""
}
