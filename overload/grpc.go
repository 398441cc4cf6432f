package overload

import (
	"context"
	"errors"

	"google.golang.org/grpc"
)

// UnaryFallback answers a unary call the guard refused: it gets the call
// and the *RejectedError, may fill reply, and its error is the call's.
type UnaryFallback func(ctx context.Context, method string, req, reply any, err error) error

// InterceptorOption configures UnaryClientInterceptor.
type InterceptorOption func(*interceptorConfig)

type interceptorConfig struct {
	fallback UnaryFallback
}

// WithUnaryFallback answers refused calls with f instead of the error.
func WithUnaryFallback(f UnaryFallback) InterceptorOption {
	return func(c *interceptorConfig) { c.fallback = f }
}

// UnaryClientInterceptor guards every unary call of a connection with g:
// a call the guard refuses fails at once with a *RejectedError, whose gRPC
// status is codes.Unavailable with a message that says throttled, breaker
// open or concurrency limit, and why (or gets the fallback's answer).
// Calls made with a RetryContext count as retries.
//
//	conn, err := grpc.NewClient(target, grpc.WithUnaryInterceptor(overload.UnaryClientInterceptor(g)))
//
// Streams are not guarded: a stream's lifetime says nothing about the
// service's latency.
func UnaryClientInterceptor(g *Guard, opts ...InterceptorOption) grpc.UnaryClientInterceptor {
	var cfg interceptorConfig
	for _, o := range opts {
		o(&cfg)
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		var tk Ticket
		var err error
		if isRetry(ctx) {
			tk, err = g.AcquireRetry(ctx)
		} else {
			tk, err = g.Acquire(ctx)
		}
		if err != nil {
			var rej *RejectedError
			if cfg.fallback != nil && errors.As(err, &rej) {
				return cfg.fallback(ctx, method, req, reply, err)
			}
			return err
		}
		err = invoker(ctx, method, req, reply, cc, callOpts...)
		tk.Done(Outcome{Err: err})
		return err
	}
}
