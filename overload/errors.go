package overload

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors: every rejection is a *RejectedError that matches one of
// them with errors.Is.
var (
	// ErrThrottled: adaptive throttling rejected the request locally,
	// because the service has been refusing a large share of requests.
	ErrThrottled = errors.New("overload: throttled")
	// ErrBreakerOpen: a circuit breaker of the service or endpoint is open
	// (or half-open with all its probes taken).
	ErrBreakerOpen = errors.New("overload: circuit breaker open")
	// ErrConcurrencyLimit: the requests in flight (or the retries in
	// flight, or the requests waiting for a slot) are at their limit.
	ErrConcurrencyLimit = errors.New("overload: concurrency limit reached")
)

// Reason says which protection rejected a request.
type Reason uint8

// Reasons of a RejectedError; String gives the value of the "reason"
// metric label.
const (
	ReasonThrottled        Reason = iota + 1 // adaptive throttling
	ReasonBreakerOpen                        // a circuit breaker
	ReasonConcurrencyLimit                   // max requests (and max pending)
	ReasonRetryLimit                         // max concurrent retries
)

func (r Reason) String() string {
	switch r {
	case ReasonThrottled:
		return "throttled"
	case ReasonBreakerOpen:
		return "breaker_open"
	case ReasonConcurrencyLimit:
		return "concurrency_limit"
	case ReasonRetryLimit:
		return "retry_limit"
	}
	return "unknown"
}

// sentinel returns the sentinel error r matches.
func (r Reason) sentinel() error {
	switch r {
	case ReasonThrottled:
		return ErrThrottled
	case ReasonBreakerOpen:
		return ErrBreakerOpen
	case ReasonConcurrencyLimit, ReasonRetryLimit:
		return ErrConcurrencyLimit
	}
	return nil
}

// RejectedError is the error of a request that a Guard refused without
// sending it. It matches ErrThrottled, ErrBreakerOpen or
// ErrConcurrencyLimit with errors.Is, and carries the gRPC status
// codes.Unavailable (status.Code(err) sees it), so that callers and gRPC
// retry policies treat it as a transient failure that never reached the
// server.
type RejectedError struct {
	Service  string // the guarded service
	Endpoint string // the endpoint, "" when the service as a whole refused
	Reason   Reason
	// Detail says why, with the figures that decided: the reject
	// probability and the counts behind it, the breaker and its trigger,
	// the limit.
	Detail string
	// RetryAfter is how long until the refusing breaker lets a probe
	// through (0 when unknown or not a breaker).
	RetryAfter time.Duration
}

func (e *RejectedError) Error() string {
	where := fmt.Sprintf("service %q", e.Service)
	if e.Endpoint != "" {
		where += fmt.Sprintf(" endpoint %s", e.Endpoint)
	}
	msg := e.Reason.sentinel()
	text := "rejected"
	if msg != nil {
		text = msg.Error()[len("overload: "):]
	}
	if e.Detail == "" {
		return fmt.Sprintf("overload: %s: %s", where, text)
	}
	return fmt.Sprintf("overload: %s: %s: %s", where, text, e.Detail)
}

// Is reports whether target is the sentinel error of e's reason.
func (e *RejectedError) Is(target error) bool {
	s := e.Reason.sentinel()
	return s != nil && target == s
}

// GRPCStatus returns codes.Unavailable with e's message.
func (e *RejectedError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}
