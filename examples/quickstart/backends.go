package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// backend is one instance of the "api" service: an HTTPS server with an
// injected latency, registered in etcd through its own etcd client, as a
// separate process would be.
type backend struct {
	name    string
	latency time.Duration
	srv     *testbackend.HTTP
	cli     *clientv3.Client
	reg     *registry.Registration

	mu    sync.Mutex
	state string // up, killed, draining, gone
}

// State returns what the script did to the backend.
func (b *backend) State() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *backend) setState(s string) {
	b.mu.Lock()
	b.state = s
	b.mu.Unlock()
}

// Addr returns the backend's host:port.
func (b *backend) Addr() string { return b.srv.Addr() }

// backendCapacity is how many requests a backend works on at once.
const backendCapacity = 8

// fleet owns the backends.
type fleet struct {
	etcd   *etcdServer
	tls    *tls.Config
	ttl    time.Duration
	logger *slog.Logger

	mu       sync.Mutex
	backends []*backend
}

// start starts a backend, registers it and adds it to the fleet.
func (f *fleet) start(ctx context.Context, name string, latency time.Duration) (*backend, error) {
	srv, err := testbackend.NewHTTP(
		testbackend.WithName(name),
		testbackend.WithLatency(latency),
		testbackend.WithTLS(f.tls),
		// Each backend works on backendCapacity requests at once (more
		// queue) and says so in every answer, with how many it has in
		// flight: package loadreport's endpoint-load-metrics header.
		testbackend.WithCapacity(backendCapacity),
		testbackend.WithLoadReport(),
	)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	cli, err := f.etcd.client()
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("backend %s: etcd client: %w", name, err)
	}
	// This is all a service does to be found: register under a lease
	// that the Registration keeps alive (and renews after an outage).
	reg, err := registry.Register(ctx, cli, registry.Instance{
		Service: serviceName,
		ID:      name,
		Addr:    srv.Addr(),
		Version: "v1",
	}, registry.WithTTL(f.ttl), registry.WithLogger(f.logger))
	if err != nil {
		cli.Close()
		srv.Close()
		return nil, fmt.Errorf("backend %s: register: %w", name, err)
	}
	b := &backend{name: name, latency: latency, srv: srv, cli: cli, reg: reg, state: "up"}
	f.mu.Lock()
	f.backends = append(f.backends, b)
	f.mu.Unlock()
	return b, nil
}

// list returns the backends in the order they were started.
func (f *fleet) list() []*backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.backends)
}

// kill crashes a backend: its server closes every connection at once and
// its etcd client goes away without revoking the lease, as when the process
// dies. The key stays in etcd until the lease expires (the TTL); clients
// stop sending to it long before, through retries and the health probe.
func (b *backend) kill() error {
	b.setState("killed")
	err := b.srv.Stop()
	b.cli.Close() // the Registration ends with it; the lease is not revoked
	return err
}

// drain marks the backend draining in etcd: clients send it no new
// requests, while the requests in flight finish.
func (b *backend) drain(ctx context.Context) error {
	b.setState("draining")
	return b.reg.Drain(ctx)
}

// deregister revokes the backend's lease, so its key goes at once, and
// stops its server: the end of a graceful shutdown.
func (b *backend) deregister() error {
	b.setState("gone")
	return errors.Join(b.reg.Close(context.Background()), b.srv.Close(), b.cli.Close())
}

// Close deregisters and stops every backend.
func (f *fleet) Close() error {
	var errs []error
	for _, b := range f.list() {
		switch b.State() {
		case "gone":
		case "killed":
			errs = append(errs, b.srv.Close())
			<-b.reg.Done() // its etcd client is closed: it has stopped or stops now
		default:
			errs = append(errs, b.deregister())
		}
	}
	return errors.Join(errs...)
}
