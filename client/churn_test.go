package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/resolver"
)

// setResolver is a resolver whose set the test changes: membership churn
// without the time etcd leases take.
type setResolver struct {
	mu     sync.Mutex
	update func(resolver.State)
	last   resolver.State
	ready  chan struct{}
}

func newSetResolver(eps ...resolver.Endpoint) *setResolver {
	return &setResolver{last: resolver.State{Endpoints: eps}, ready: make(chan struct{})}
}

func (r *setResolver) Watch(ctx context.Context, update func(resolver.State)) error {
	r.mu.Lock()
	r.update = update
	update(r.last)
	close(r.ready)
	r.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

// set delivers eps.
func (r *setResolver) set(eps ...resolver.Endpoint) {
	<-r.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = resolver.State{Endpoints: eps}
	r.update(r.last)
}

// seriesFor counts the per-endpoint series of addr.
func seriesFor(t *testing.T, reg *prometheus.Registry, addr string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "endpoint" && lp.GetValue() == addr {
					n++
				}
			}
		}
	}
	return n
}

// With pod churn, per-endpoint series go with their endpoints: a request
// that was in flight when its endpoint left does not bring them back.
func TestPerEndpointSeriesGoWithTheEndpoint(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	old := testbackend.MustHTTP(t, testbackend.WithName("old"), testbackend.WithLatency(300*time.Millisecond))
	next := testbackend.MustHTTP(t, testbackend.WithName("next"))
	reg := prometheus.NewRegistry()
	r := newSetResolver(resolver.Endpoint{Addr: old.Addr()})
	c, err := client.NewFromResolver("api", r, client.WithLogger(testlog.New(t)), client.WithoutProbe(),
		client.WithRegisterer(reg), client.WithPerEndpointMetrics(true), client.WithEmptySetGrace(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := get(ctx, c, "http"); err != nil {
		t.Fatal(err)
	}
	if seriesFor(t, reg, old.Addr()) == 0 {
		t.Fatal("no per-endpoint series for the endpoint in use")
	}
	done := make(chan error, 1)
	go func() {
		_, err := get(ctx, c, "http")
		done <- err
	}()
	waitFor(t, 10*time.Second, "the request to be in flight", func() bool { return old.InFlight() == 1 })
	r.set(resolver.Endpoint{Addr: next.Addr()})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := seriesFor(t, reg, old.Addr()); n != 0 {
		t.Fatalf("%d series of the removed endpoint after its last request ended, want none", n)
	}
	// Churn: endpoints come and go; the series follow the table.
	for range 5 {
		b := testbackend.MustHTTP(t)
		r.set(resolver.Endpoint{Addr: b.Addr()})
		if _, err := get(ctx, c, "http"); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	r.set(resolver.Endpoint{Addr: next.Addr()})
	if _, err := get(ctx, c, "http"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "endpoint" {
					endpoints[lp.GetValue()] = true
				}
			}
		}
	}
	if len(endpoints) != 1 || !endpoints[next.Addr()] {
		t.Fatalf("per-endpoint series for %v after churn, want only the current endpoint %s", endpoints, next.Addr())
	}
}
