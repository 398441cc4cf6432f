package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/smartroute/smartroute/registry"
)

// testService is a trivial grpc.testing.TestService: UnaryCall waits the
// server's latency and answers with its ID.
type testService struct {
	testpb.UnimplementedTestServiceServer
	id      string
	latency time.Duration
}

func (s *testService) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &testpb.SimpleResponse{ServerId: s.id, Hostname: s.id}, nil
}

func (s *testService) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// serve runs one server until ctx ends: it listens, serves the health and
// test services, registers in etcd, and on the way out drains,
// deregisters and stops gracefully. ready, if not nil, hears once the
// server is registered.
func serve(ctx context.Context, cli *clientv3.Client, c config, out io.Writer, ready chan<- struct{}) error {
	lis, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	addr := lis.Addr().String()
	id := c.id
	if id == "" {
		id = addr
	}

	srv := grpc.NewServer()
	hs := health.NewServer() // overall health "" starts SERVING
	healthpb.RegisterHealthServer(srv, hs)
	testpb.RegisterTestServiceServer(srv, &testService{id: id, latency: c.latency})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	// Register once serving: the lease is kept alive, and renewed after an
	// etcd outage, until Close.
	reg, err := registry.Register(ctx, cli, registry.Instance{Service: c.service, ID: id, Addr: addr, Version: "v1"},
		registry.WithTTL(c.ttl), registry.WithLogger(c.logger))
	if err != nil {
		srv.Stop()
		<-served
		return fmt.Errorf("server %s: register: %w", id, err)
	}
	fmt.Fprintf(out, "server %s: serving on %s, registered at %s (latency %v)\n", id, addr, reg.Key(), c.latency)
	if ready != nil {
		ready <- struct{}{}
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		reg.Close(context.Background())
		return fmt.Errorf("server %s: %w", id, err)
	}

	// Shutting down in order: clients stop sending new calls to a draining
	// instance; after the drain period the key goes, then the server
	// finishes the calls in flight (GOAWAY) and stops.
	stopCtx, cancel := context.WithTimeout(context.Background(), c.drain+5*time.Second)
	defer cancel()
	if c.drain > 0 {
		if err := reg.Drain(stopCtx); err != nil {
			fmt.Fprintf(out, "server %s: drain: %v\n", id, err)
		}
		fmt.Fprintf(out, "server %s: draining for %v\n", id, c.drain)
		t := time.NewTimer(c.drain)
		select {
		case <-t.C:
		case <-stopCtx.Done():
		}
		t.Stop()
	}
	err = reg.Close(context.Background())
	hs.Shutdown() // health checks now answer NOT_SERVING
	srv.GracefulStop()
	<-served
	fmt.Fprintf(out, "server %s: deregistered and stopped\n", id)
	return err
}
