package etcdtest

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// handlerWait bounds how long a stop waits for a member's unary handlers.
// Once its client proxy is down their callers are gone, so they return as
// soon as they next look at their context.
const handlerWait = 5 * time.Second

// handlerGate counts the unary handlers running in a member's gRPC server,
// so that a stop can wait for them before etcd closes its backend. etcd
// does not: a hard stop closes the backend while gRPC still serves, and an
// Authenticate still checking a password then read a closed bolt
// transaction and crashed the test binary (a nil pointer in bbolt's
// Tx.Bucket). A real crash runs no handler after it; the gate keeps the
// test's stop as clean as that.
type handlerGate struct {
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

func (g *handlerGate) serverOption() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(g.intercept)
}

func (g *handlerGate) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "etcdtest: member stopping")
	}
	g.running.Add(1)
	g.mu.Unlock()
	defer g.running.Done()
	return handler(ctx, req)
}

// close refuses new calls and waits up to handlerWait for the running ones
// to return.
func (g *handlerGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.running.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(handlerWait):
	}
}
