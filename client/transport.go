package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/overload"
)

// defaultIdleConnTimeout closes idle per-endpoint connections that a
// zero-valued caller transport would keep forever (http.DefaultTransport's
// value).
const defaultIdleConnTimeout = 90 * time.Second

// dialError marks a failure to connect: nothing of the request reached a
// server, so any request may be retried elsewhere.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("dial %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// errPerTryTimeout ends an attempt that ran past RetryPolicy.PerTryTimeout.
var errPerTryTimeout = errors.New("client: attempt timed out (per-try timeout)")

// transportFor returns the endpoint's own HTTP transport, a clone of the
// base transport that dials only this endpoint. Connection pools are thus
// per endpoint, while the request URL, the Host header and the TLS
// ServerName keep naming the logical service.
//
// With WithMaxConnectionAge, the endpoint's transport is replaced by a
// fresh one once it is older than the age, and the old one is told to
// close its connections as soon as they are idle: requests in flight
// finish, and later ones make a new handshake (with the certificates of
// the moment).
func (c *Client) transportFor(ep *endpoint) *http.Transport {
	old := ep.transport.Load()
	if old != nil {
		if c.cfg.maxConnAge <= 0 || c.cfg.now()-ep.transportBorn.Load() < int64(c.cfg.maxConnAge) {
			return old
		}
	}
	t := c.newEndpointTransport(ep)
	if ep.transport.CompareAndSwap(old, t) {
		ep.transportBorn.Store(c.cfg.now())
		if old != nil {
			old.CloseIdleConnections() // and close the others when they become idle
		}
		return t
	}
	return ep.transport.Load()
}

// newEndpointTransport returns a clone of the base transport that dials
// only ep.
func (c *Client) newEndpointTransport(ep *endpoint) *http.Transport {
	t := c.base.Clone()
	t.Proxy = nil
	if t.IdleConnTimeout == 0 {
		t.IdleConnTimeout = defaultIdleConnTimeout
	}
	addr := ep.addr
	dial := c.base.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &dialError{addr: addr, err: err}
		}
		return conn, nil
	}
	if dialTLS := c.base.DialTLSContext; dialTLS != nil {
		t.DialTLSContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			conn, err := dialTLS(ctx, network, addr)
			if err != nil {
				return nil, &dialError{addr: addr, err: err}
			}
			return conn, nil
		}
	}
	return t
}

// closeIdleIfUnused closes a removed endpoint's idle connections once no
// request is using it.
func (ep *endpoint) closeIdleIfUnused() {
	if ep.removed.Load() && ep.hot.inflight.Load() == 0 {
		if t := ep.transport.Load(); t != nil {
			t.CloseIdleConnections()
		}
	}
}

// RoundTrip sends req to an endpoint of the service, picked by the policy,
// and retries or hedges it on other endpoints as configured. The request's
// URL, Host header and TLS server name are left alone: only the dial target
// changes. It honours req's context; it fails with an error wrapping
// ErrNoHealthyEndpoint when no endpoint can take the request.
//
// RoundTrip is safe for concurrent use.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-c.closed: // first: once ready and closed are both closed, select would pick at random
		closeBody(req)
		return nil, ErrClosed
	default:
	}
	select {
	case <-c.table.ready:
	case <-req.Context().Done():
		closeBody(req)
		return nil, req.Context().Err()
	case <-c.closed:
		closeBody(req)
		return nil, ErrClosed
	}
	req = c.traceRequest(req) // trace.go: the caller's span, when it records
	start := time.Now()
	var pr pickRequest
	pr.now = c.table.clock.Now()
	c.budget.request(pr.now)
	if c.cfg.canary != nil {
		pr.canary = c.cfg.canary.isCanaryRequest(req)
	}
	if c.cfg.policy == ConsistentHash {
		if key := c.cfg.hashKey(req); key != "" {
			pr.hash, pr.hasHash = hashKey(key), true
		}
	}
	var resp *http.Response
	var err error
	if c.cfg.hedging != nil && idempotent(req) && replayable(req) {
		resp, err = c.roundTripHedged(req, &pr)
	} else {
		resp, err = c.roundTripRetrying(req, &pr)
	}
	c.finish(req, resp, err, time.Since(start))
	c.traceRequestEnd(req, err)
	if f := c.cfg.overloadFallback; f != nil && rejected(err) {
		return f(req, err)
	}
	return resp, err
}

// finish records a request's final outcome.
func (c *Client) finish(req *http.Request, resp *http.Response, err error, d time.Duration) {
	var label string
	switch {
	case errors.Is(err, ErrNoHealthyEndpoint):
		label = outcomeLabelNoRoute
	case rejected(err):
		label = outcomeLabelRejected
	case err != nil && errors.Is(req.Context().Err(), context.DeadlineExceeded):
		label = outcomeLabelDeadline
	case err != nil && req.Context().Err() != nil:
		label = outcomeLabelCanceled
	case err != nil:
		label = outcomeLabelError
	case resp.StatusCode >= 500:
		label = outcomeLabelHTTP5xx
	case resp.StatusCode >= 400:
		label = outcomeLabelHTTP4xx
	default:
		label = outcomeLabelOK
	}
	c.m.requests.WithLabelValues(label).Inc()
	if err == nil {
		c.m.duration.Observe(d.Seconds())
		if c.lat != nil {
			c.lat.observe(d, c.cfg.now())
		}
	}
}

// roundTripRetrying sends req, retrying on other endpoints while the
// retry policy and budget allow.
func (c *Client) roundTripRetrying(req *http.Request, pr *pickRequest) (*http.Response, error) {
	var last *http.Response // the answer a retry would replace
	var lastErr error
	var lastEP string
	for attempt := 0; ; attempt++ {
		pr.now = c.table.clock.Now()
		ep, adm, err := c.pickAdmitted(req.Context(), pr, attempt > 0, false)
		if err != nil {
			if attempt > 0 {
				// Overload protection refused the retry: the last answer
				// stands.
				return last, lastErr
			}
			closeBody(req)
			return nil, err
		}
		if ep == nil {
			if attempt > 0 {
				// No endpoint left to retry on (the set changed): the
				// last answer stands rather than ErrNoHealthyEndpoint.
				return last, lastErr
			}
			closeBody(req)
			return nil, c.noEndpoint()
		}
		if attempt > 0 {
			discard(last)
			c.m.retries.Inc()
			c.cfg.logger.Debug("client: retrying on another endpoint", "service", c.name, "endpoint", lastEP, "attempt", attempt, "err", lastErr)
		}
		pr.addTried(ep)
		areq, err := c.attemptRequest(req, req.Context(), attempt > 0)
		if err != nil {
			ep.hot.exploring.Store(false) // picked, never sent
			adm.release()
			return nil, err
		}
		resp, err := c.attempt(ep, areq, adm)
		if !c.shouldRetry(req, resp, err, attempt) {
			return resp, err
		}
		last, lastErr, lastEP = resp, err, ep.addr
	}
}

// shouldRetry decides whether a finished attempt is retried.
func (c *Client) shouldRetry(req *http.Request, resp *http.Response, err error, attempt int) bool {
	rp := &c.cfg.retry
	if rp.Disabled || attempt >= rp.MaxRetries || req.Context().Err() != nil || !replayable(req) {
		return false
	}
	var dialErr *dialError
	switch {
	case err != nil && errors.As(err, &dialErr):
		// Nothing was sent: safe for any method.
	case err != nil:
		if !idempotent(req) {
			return false
		}
	case rp.retriesStatus(resp.StatusCode):
		if !idempotent(req) {
			return false
		}
	default:
		return false
	}
	return c.budget.withdraw(c.cfg.now())
}

// attemptRequest returns the request to send for one attempt: req itself
// for the first, a clone with a fresh body (GetBody) for the others, under
// ctx.
func (c *Client) attemptRequest(req *http.Request, ctx context.Context, again bool) (*http.Request, error) {
	if !again && ctx == req.Context() {
		return req, nil
	}
	r := req.Clone(ctx)
	if again && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("client: replay request body: %w", err)
		}
		r.Body = body
	}
	return r, nil
}

// pick picks an endpoint for pr from the current snapshot.
func (c *Client) pick(pr *pickRequest) *endpoint {
	ep := c.table.snapshot().pick(pr)
	if ep != nil {
		c.m.picks.Inc()
	}
	return ep
}

// noEndpoint returns the error for a request no endpoint can take.
func (c *Client) noEndpoint() error {
	c.table.mu.Lock()
	rerr := c.table.lastErr
	c.table.mu.Unlock()
	if rerr != nil {
		return fmt.Errorf("client: service %q: %w (resolver: %w)", c.name, ErrNoHealthyEndpoint, rerr)
	}
	return fmt.Errorf("client: service %q: %w", c.name, ErrNoHealthyEndpoint)
}

// attempt sends one attempt to ep and records its passive figures; adm's
// tickets (WithOverload) learn how it ended. The endpoint counts as busy,
// and the tickets are held, until the response body is closed.
func (c *Client) attempt(ep *endpoint, req *http.Request, adm admission) (*http.Response, error) {
	t := c.transportFor(ep)
	ctx := req.Context()
	var cancel context.CancelFunc
	var perTry *time.Timer
	if d := c.cfg.retry.PerTryTimeout; d > 0 {
		// The per-try timeout bounds the wait for the response headers,
		// not the reading of the body.
		var cancelCause context.CancelCauseFunc
		ctx, cancelCause = context.WithCancelCause(ctx)
		cancel = func() { cancelCause(context.Canceled) }
		perTry = time.AfterFunc(d, func() { cancelCause(errPerTryTimeout) })
		req = req.WithContext(ctx)
	}
	tr := c.traceAttempt(req, ep)
	// A new connection's dial and TLS handshake are not the endpoint's
	// answer time: the sample starts when the connection is in hand. (One
	// slow first handshake on a busy machine used to keep a fast endpoint
	// out for seconds.)
	var dialed atomic.Int64
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				dialed.Store(c.cfg.now())
			}
		},
	}))
	h := ep.hot
	start := c.cfg.now()
	h.start(start)
	resp, err := t.RoundTrip(req)
	if perTry != nil {
		perTry.Stop()
	}
	end := c.cfg.now()
	h.answered(end)
	latency := time.Duration(end - start)
	if err != nil && cancel != nil && errors.Is(context.Cause(ctx), errPerTryTimeout) {
		err = fmt.Errorf("%w: %w", errPerTryTimeout, err)
	}
	o, label := c.classify(req, resp, err)
	tr.end(label)
	if resp != nil {
		c.loadReport(ep, resp.Header, end)
	}
	sample := latency
	if at := dialed.Load(); at > start && err == nil {
		sample = time.Duration(end - at)
	}
	c.table.observe(ep, o, sample, end)
	c.m.attempt(ep, label, latency)
	var oo overload.Outcome
	if adm.guarded {
		oo = overloadOutcome(req.Context(), resp, err, latency)
	}
	if err != nil {
		if cancel != nil {
			cancel()
		}
		adm.done(oo)
		c.release(ep)
		return nil, err
	}
	resp.Body = &trackedBody{rc: resp.Body, done: func() {
		if cancel != nil {
			cancel()
		}
		adm.done(oo)
		c.release(ep)
	}}
	return resp, nil
}

// classify tells what an attempt says about its endpoint. One rule for
// HTTP and gRPC: an attempt that ran out of time waiting on the endpoint,
// by the caller's deadline or the per-try timeout, is a failure (and its
// elapsed time a lower bound on the endpoint's latency); a caller's plain
// cancellation says nothing of the endpoint; a server refusing work to
// protect itself (503, 429) is busy, not broken.
func (c *Client) classify(req *http.Request, resp *http.Response, err error) (outcome, string) {
	ctx := req.Context()
	switch {
	case err != nil && errors.Is(context.Cause(ctx), errPerTryTimeout):
		return outcomeFailure, outcomeLabelError
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return outcomeFailure, outcomeLabelDeadline
	case err != nil && ctx.Err() != nil:
		return outcomeNeutral, outcomeLabelCanceled
	case err != nil && rejected(err):
		return outcomeNeutral, outcomeLabelRejected // refused before it left: says nothing of the endpoint
	case err != nil:
		return outcomeFailure, outcomeLabelError
	case resp.StatusCode == http.StatusServiceUnavailable:
		return outcomeBusy, outcomeLabelHTTP5xx
	case resp.StatusCode == http.StatusTooManyRequests:
		return outcomeBusy, outcomeLabelHTTP4xx
	case resp.StatusCode >= 500:
		return outcomeFailure, outcomeLabelHTTP5xx
	case resp.StatusCode >= 400:
		return outcomeSuccess, outcomeLabelHTTP4xx
	}
	return outcomeSuccess, outcomeLabelOK
}

func (c *Client) release(ep *endpoint) {
	if ep.hot.inflight.Add(-1) == 0 {
		ep.closeIdleIfUnused()
	}
}

// trackedBody runs done once, when the body is closed or read to its end.
type trackedBody struct {
	rc   io.ReadCloser
	once sync.Once
	done func()
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.once.Do(b.done)
	}
	return n, err
}

func (b *trackedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(b.done)
	return err
}

// discard drains a little of an abandoned response, so its connection can
// be reused, and closes it.
func discard(resp *http.Response) {
	if resp == nil {
		return
	}
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// roundTripHedged sends req, and after the hedging delay a copy to another
// endpoint, up to MaxHedges copies; the first usable answer wins and the
// other attempts are cancelled. Failed attempts are retried as without
// hedging.
func (c *Client) roundTripHedged(req *http.Request, pr *pickRequest) (*http.Response, error) {
	type result struct {
		resp   *http.Response
		err    error
		cancel context.CancelFunc
		idx    int
	}
	h := c.cfg.hedging
	results := make(chan result, maxAttempts)
	var launched, pending, hedges, retries int
	var cancels [maxAttempts]context.CancelFunc
	var refused error // overload protection's refusal of the first attempt

	launch := func() bool {
		pr.now = c.table.clock.Now()
		ep, adm, err := c.pickAdmitted(req.Context(), pr, launched > 0, launched > 0)
		if err != nil {
			if launched == 0 {
				refused = err
			}
			return false
		}
		if ep == nil {
			return false
		}
		pr.addTried(ep)
		ctx, cancel := context.WithCancel(req.Context())
		areq, err := c.attemptRequest(req, ctx, launched > 0)
		if err != nil {
			cancel()
			ep.hot.exploring.Store(false) // picked, never sent
			adm.release()
			return false
		}
		idx := launched
		cancels[idx] = cancel
		launched++
		pending++
		go func() {
			resp, err := c.attempt(ep, areq, adm)
			results <- result{resp, err, cancel, idx}
		}()
		return true
	}
	// abandon cancels the attempts still running and closes whatever they
	// answer, in the background: the caller has its answer.
	abandon := func(winner int) {
		for i := 0; i < launched; i++ {
			if i != winner {
				cancels[i]()
			}
		}
		if pending == 0 {
			return
		}
		n := pending
		c.goDrain(func() {
			for ; n > 0; n-- {
				r := <-results
				discard(r.resp)
				r.cancel()
			}
		})
	}

	if !launch() {
		closeBody(req)
		if refused != nil {
			return nil, refused
		}
		return nil, c.noEndpoint()
	}
	timer := time.NewTimer(c.hedgeDelay())
	defer timer.Stop()
	var last result
	for {
		select {
		case r := <-results:
			pending--
			if r.err == nil && !c.cfg.retry.retriesStatus(r.resp.StatusCode) {
				if last.resp != nil {
					discard(last.resp)
				}
				if last.cancel != nil {
					last.cancel()
				}
				abandon(r.idx)
				r.resp.Body = &cancelOnClose{ReadCloser: r.resp.Body, cancel: r.cancel}
				return r.resp, nil
			}
			// A failed attempt: keep the latest failure to return if
			// nothing better comes, and retry while allowed.
			if last.resp != nil {
				discard(last.resp)
				last.cancel()
			}
			last = r
			if pending == 0 {
				if retries < c.cfg.retry.MaxRetries && c.shouldRetry(req, r.resp, r.err, retries) && launched < maxAttempts && launch() {
					retries++
					c.m.retries.Inc()
					continue
				}
				if last.err != nil {
					last.cancel()
					return nil, last.err
				}
				last.resp.Body = &cancelOnClose{ReadCloser: last.resp.Body, cancel: last.cancel}
				return last.resp, nil
			}
		case <-timer.C:
			if hedges < h.MaxHedges && launched < maxAttempts && c.budget.withdraw(c.cfg.now()) && launch() {
				hedges++
				c.m.hedges.Inc()
				timer.Reset(c.hedgeDelay())
			}
		}
	}
}

// hedgeDelay returns how long to wait before the next hedge.
func (c *Client) hedgeDelay() time.Duration {
	h := c.cfg.hedging
	if h.Delay > 0 {
		return h.Delay
	}
	if d, ok := c.lat.quantile(h.Percentile, c.cfg.now()); ok {
		return max(d, h.MinDelay)
	}
	return time.Duration(1<<63 - 1) // not enough data yet: do not hedge
}

// cancelOnClose cancels the winning attempt's context once its body is
// closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
	closed atomic.Bool
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.cancel()
	}
	return err
}
