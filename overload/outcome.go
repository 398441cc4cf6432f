package overload

import (
	"context"
	"errors"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Outcome is what a finished request tells the guard: Ticket.Done takes
// it, the guard's Classifier turns it into a Verdict.
type Outcome struct {
	// Latency is how long the request took. Zero means "measure it": the
	// time since Acquire.
	Latency time.Duration
	// Err is the request's error, nil when it got an answer. A gRPC
	// status error carries its code.
	Err error
	// Status is the HTTP status of the answer (0 for gRPC or no answer).
	Status int
}

// Verdict is what a finished request says about the service.
//
//	verdict     throttling      error breakers   slow-call breaker   half-open probe
//	Success     accepted        success          by latency          passes (unless slow)
//	Failure     accepted        error            by latency          fails
//	Overloaded  not accepted    not counted      not counted         fails
//	NoAnswer    not accepted    error            by latency          fails
//	Ignored     not counted     not counted      not counted         given back
type Verdict uint8

// Verdicts.
const (
	// Success: the service did the work (including answers that blame
	// the caller: 4xx but 429, gRPC InvalidArgument, NotFound and the
	// like).
	Success Verdict = iota
	// Failure: the service took the request and failed it (5xx but 503,
	// gRPC Internal, Unknown, DataLoss, Unimplemented).
	Failure
	// Overloaded: the service refused the request to protect itself
	// (429, 503, gRPC ResourceExhausted). Busy is not broken: throttling
	// counts it, error breakers do not.
	Overloaded
	// NoAnswer: no answer came: the connection failed, or the deadline
	// ran out while waiting (gRPC Unavailable, DeadlineExceeded).
	NoAnswer
	// Ignored: the caller gave up (context canceled), or a guard further
	// down refused the request before it left; it says nothing about the
	// service.
	Ignored
)

func (v Verdict) String() string {
	switch v {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Overloaded:
		return "overloaded"
	case NoAnswer:
		return "no_answer"
	case Ignored:
		return "ignored"
	}
	return "unknown"
}

// accepted reports whether the service accepted the request, in the sense
// of adaptive throttling.
func (v Verdict) accepted() bool { return v == Success || v == Failure }

// Classifier decides the verdict of a finished request. It runs on the
// request's goroutine for every request and must be cheap and safe for
// concurrent use.
type Classifier func(Outcome) Verdict

// DefaultClassifier is the Classifier of a Guard without WithClassifier:
//
//   - no error: HTTP 429 and 503 are Overloaded, other 5xx are Failure,
//     anything else is Success;
//   - a *RejectedError (a guard further down refused) and
//     context.Canceled are Ignored;
//   - context.DeadlineExceeded and net timeouts are NoAnswer: a
//     service that answers too late to be of use did not accept the
//     request, the signal that matters most when its queue grows;
//   - gRPC codes: ResourceExhausted is Overloaded; Unavailable and
//     DeadlineExceeded are NoAnswer; Canceled is Ignored; Internal,
//     Unknown, DataLoss and Unimplemented are Failure (go-zero's
//     breaker counts the same codes); the others blame the request, not
//     the service, and are Success;
//   - any other error (connection refused or reset, TLS, DNS) is
//     NoAnswer.
func DefaultClassifier(o Outcome) Verdict {
	if o.Err == nil {
		switch {
		case o.Status == http.StatusTooManyRequests || o.Status == http.StatusServiceUnavailable:
			return Overloaded
		case o.Status >= 500:
			return Failure
		}
		return Success
	}
	var rej *RejectedError
	switch {
	case errors.As(o.Err, &rej):
		return Ignored
	case errors.Is(o.Err, context.Canceled):
		return Ignored
	case errors.Is(o.Err, context.DeadlineExceeded):
		return NoAnswer
	}
	if st, ok := status.FromError(o.Err); ok {
		switch st.Code() {
		case codes.OK:
			return Success
		case codes.Canceled:
			return Ignored
		case codes.ResourceExhausted:
			return Overloaded
		case codes.Unavailable, codes.DeadlineExceeded:
			return NoAnswer
		case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
			return Failure
		}
		return Success
	}
	return NoAnswer
}
