package overload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Transport is an http.RoundTripper that guards every request it passes
// to Base with Guard: a request the guard refuses fails at once with a
// *RejectedError (or gets the Fallback's answer) and never reaches Base.
// It works over any RoundTripper: an http.Transport, or a smartroute
// client.Client, which then still picks the endpoint.
//
// A request holds its slot until its response body is closed (as net/http
// requires callers to do); its latency, for slow-call breakers, is the
// time to the response headers.
type Transport struct {
	// Guard guards the requests; nil passes everything through.
	Guard *Guard
	// Base sends the admitted requests (nil: http.DefaultTransport).
	Base http.RoundTripper
	// Fallback, if set, answers the requests the guard refuses: it gets
	// the request and the *RejectedError, and its response and error are
	// what RoundTrip returns (e.g. a cached answer, or a 503 with
	// Retry-After for a proxy). The request's body is already closed.
	Fallback func(req *http.Request, err error) (*http.Response, error)
}

type retryKey struct{}

// RetryContext marks the requests made with ctx as retries of a request
// already sent: Transport and the gRPC interceptor then admit them with
// AcquireRetry, within the guard's MaxRetries.
func RetryContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryKey{}, true)
}

// IsRetryContext reports whether ctx was marked by RetryContext: for a
// balancer or wrapper of its own that admits retries with AcquireRetry.
func IsRetryContext(ctx context.Context) bool { return isRetry(ctx) }

func isRetry(ctx context.Context) bool {
	v, _ := ctx.Value(retryKey{}).(bool)
	return v
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	ctx := req.Context()
	var tk Ticket
	var err error
	if isRetry(ctx) {
		tk, err = t.Guard.AcquireRetry(ctx)
	} else {
		tk, err = t.Guard.Acquire(ctx)
	}
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		var rej *RejectedError
		if t.Fallback != nil && errors.As(err, &rej) {
			return t.Fallback(req, err)
		}
		return nil, err
	}
	resp, err := base.RoundTrip(req)
	latency := tk.elapsed()
	if err != nil {
		tk.Done(Outcome{Latency: latency, Err: err})
		return nil, err
	}
	o := Outcome{Latency: latency, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the upgraded connection (an io.ReadWriteCloser that
		// callers type-assert): the request is over, leave it unwrapped.
		tk.Done(o)
		return resp, nil
	}
	resp.Body = &ticketBody{rc: resp.Body, t: tk, o: o}
	return resp, nil
}

// elapsed returns the time since the ticket was issued (0 for the zero
// Ticket, which Done then ignores).
func (t Ticket) elapsed() time.Duration {
	if t.s == nil {
		return 0
	}
	return max(time.Duration(t.s.g.tb.now()-t.start), 1)
}

// ticketBody calls Done on its ticket once: when closed, or when reading
// ends in an error or EOF. Close may race with Read (net/http allows it).
type ticketBody struct {
	rc   io.ReadCloser
	t    Ticket
	o    Outcome
	done atomic.Bool
}

func (b *ticketBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *ticketBody) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

func (b *ticketBody) finish() {
	if b.done.CompareAndSwap(false, true) {
		b.t.Done(b.o)
	}
}
