package testbackend

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/loadreport"
)

// GRPC is a gRPC server on loopback serving grpc.health.v1 and the
// grpc.testing.TestService methods EmptyCall and UnaryCall. The unary
// methods wait for a free worker and the injected latency, send the
// header metadata x-backend: <name>, and UnaryCall answers with Hostname
// and ServerId set to the name. Methods are safe for concurrent use.
type GRPC struct {
	testpb.UnimplementedTestServiceServer

	name    string
	addr    string
	creds   credentials.TransportCredentials
	delay   delay
	code    atomic.Uint32 // codes.Code the unary methods fail with; OK = none
	workers workers
	health  *health.Server
	load    *loadreport.Reporter // nil without WithLoadReport
	opts    []grpc.ServerOption  // WithServerOptions

	requests atomic.Int64
	inFlight atomic.Int64

	mu  sync.Mutex
	srv *grpc.Server // nil while stopped
	wg  sync.WaitGroup
}

// NewGRPC starts a gRPC backend (over TLS with WithTLS). Its overall health
// ("" service) starts SERVING. WithStatus does not apply; see SetCode.
func NewGRPC(opts ...Option) (*GRPC, error) {
	cfg := newConfig(opts)
	ln, err := listen(cfg.addr)
	if err != nil {
		return nil, err
	}
	b := &GRPC{
		name:    cfg.name,
		addr:    ln.Addr().String(),
		workers: newWorkers(cfg.capacity),
		health:  health.NewServer(),
		load:    cfg.newReporter(),
		opts:    cfg.serverOpts,
	}
	if cfg.tls != nil {
		b.creds = credentials.NewTLS(cfg.tls)
	}
	if b.name == "" {
		b.name = b.addr
	}
	b.delay.set(cfg.latency)
	b.delay.setTail(cfg.tailP, cfg.tailK)
	b.mu.Lock()
	b.serveLocked(ln)
	b.mu.Unlock()
	return b, nil
}

// MustGRPC is NewGRPC for tests: it fails t on error and closes the backend
// in t.Cleanup.
func MustGRPC(t testing.TB, opts ...Option) *GRPC {
	t.Helper()
	b, err := NewGRPC(opts...)
	if err != nil {
		t.Fatalf("testbackend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Name returns the backend's name.
func (b *GRPC) Name() string { return b.name }

// Addr returns the host:port the backend listens on; it stays the same
// across Stop and Restart.
func (b *GRPC) Addr() string { return b.addr }

// SetLatency changes the delay of every unary call from now on.
func (b *GRPC) SetLatency(d time.Duration) { b.delay.set(d) }

// SetHeavyTail delays a fraction p of the calls k times the latency.
func (b *GRPC) SetHeavyTail(p, k float64) { b.delay.setTail(p, k) }

// SetCode makes the unary methods fail with code (after the latency);
// codes.OK restores normal answers.
func (b *GRPC) SetCode(code codes.Code) { b.code.Store(uint32(code)) }

// SetServing sets the health of service ("" is the server as a whole) to
// SERVING or NOT_SERVING.
func (b *GRPC) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	b.health.SetServingStatus(service, st)
}

// Requests returns how many TestService calls arrived (health checks are
// not counted).
func (b *GRPC) Requests() int64 { return b.requests.Load() }

// InFlight returns how many TestService calls are being handled now.
func (b *GRPC) InFlight() int64 { return b.inFlight.Load() }

// Running reports whether the backend is serving.
func (b *GRPC) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// LoadReporter returns the Reporter of a backend started with
// WithLoadReport, nil otherwise.
func (b *GRPC) LoadReporter() *loadreport.Reporter { return b.load }

// EmptyCall implements grpc.testing.TestService.
func (b *GRPC) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	if err := b.handle(ctx); err != nil {
		return nil, err
	}
	return &testpb.Empty{}, nil
}

// UnaryCall implements grpc.testing.TestService; the response names the
// backend in Hostname and ServerId.
func (b *GRPC) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if err := b.handle(ctx); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Hostname: b.name, ServerId: b.name}, nil
}

// handle applies counting, capacity, latency and the error override.
func (b *GRPC) handle(ctx context.Context) error {
	b.requests.Add(1)
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	_ = grpc.SetHeader(ctx, metadata.Pairs(strings.ToLower(HeaderBackend), b.name))
	if err := b.workers.acquire(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	defer b.workers.release()
	if err := b.delay.wait(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	if c := codes.Code(b.code.Load()); c != codes.OK {
		return status.Errorf(c, "testbackend %s: injected %s", b.name, c)
	}
	return nil
}

// serveLocked starts a fresh grpc.Server on ln; b.mu is held.
func (b *GRPC) serveLocked(ln net.Listener) {
	var opts []grpc.ServerOption
	if b.creds != nil {
		opts = append(opts, grpc.Creds(b.creds))
	}
	if b.load != nil {
		opts = append(b.load.ServerOptions(), opts...)
	}
	opts = append(opts, b.opts...)
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, b.health)
	if b.load != nil {
		// Register fails only without a metrics provider; b.load is one.
		_ = b.load.RegisterORCA(srv)
	}
	testpb.RegisterTestServiceServer(srv, b)
	b.srv = srv
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// Stop closes the listener and every connection at once, as a crash would
// (in-flight calls fail), and waits for the handlers to return.
func (b *GRPC) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return ErrStopped
	}
	b.srv.Stop()
	b.wg.Wait()
	b.srv = nil
	return nil
}

// Restart serves again on the same address after Stop, with the health
// statuses it had. It is a no-op on a running backend.
func (b *GRPC) Restart() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	ln, err := listen(b.addr)
	if err != nil {
		return err
	}
	b.serveLocked(ln)
	return nil
}

// Close stops the backend if it is running. It is idempotent.
func (b *GRPC) Close() error {
	if err := b.Stop(); err != nil && !errors.Is(err, ErrStopped) {
		return err
	}
	return nil
}
