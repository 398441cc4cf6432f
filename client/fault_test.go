package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// steady sends GETs from workers goroutines until stop is closed, counting
// sent and failed requests. Every request has a deadline, a bound against
// a hang (30 s): the tests' own timeouts decide what counts as slow.
type steady struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []error
	by           sync.Map // backend name -> *atomic.Int64
	wg           sync.WaitGroup
	stop         chan struct{}
}

func startSteady(c *client.Client, workers int) *steady {
	s := &steady{stop: make(chan struct{})}
	for range workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
				name, err := get(ctx, c, "http")
				cancel()
				s.sent.Add(1)
				if err != nil {
					s.failed.Add(1)
					s.mu.Lock()
					if len(s.errs) < 5 {
						s.errs = append(s.errs, fmt.Errorf("at %s: %w", time.Now().Format("15:04:05.000"), err))
					}
					s.mu.Unlock()
					continue
				}
				n, _ := s.by.LoadOrStore(name, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	return s
}

// served returns the requests backend name answered so far.
func (s *steady) served(name string) int64 {
	n, ok := s.by.Load(name)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// end stops the traffic and fails t if any request failed.
func (s *steady) end(t *testing.T) {
	t.Helper()
	close(s.stop)
	s.wg.Wait()
	t.Logf("%d requests sent, %d failed", s.sent.Load(), s.failed.Load())
	if s.failed.Load() > 0 {
		t.Errorf("%d of %d requests failed: %v", s.failed.Load(), s.sent.Load(), s.errs)
	}
}

// waitServed waits until backend name answered more requests than before.
func (s *steady) waitServed(t *testing.T, d time.Duration, name string) {
	t.Helper()
	before := s.served(name)
	waitFor(t, d, name+" to take traffic", func() bool { return s.served(name) > before })
}

// etcdBackends starts n HTTP backends and registers them as service "api"
// with the given lease TTL.
func etcdBackends(t *testing.T, cli *clientv3.Client, n int, ttl time.Duration) ([]*testbackend.HTTP, []*registry.Registration) {
	t.Helper()
	var bs []*testbackend.HTTP
	var regs []*registry.Registration
	for i := range n {
		b := testbackend.MustHTTP(t, testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithLatency(time.Millisecond))
		bs = append(bs, b)
		regs = append(regs, registerBackend(t, cli, b, ttl))
	}
	return bs, regs
}

func registerBackend(t *testing.T, cli *clientv3.Client, b *testbackend.HTTP, ttl time.Duration) *registry.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	reg, err := registry.Register(ctx, cli, registry.Instance{Service: "api", ID: b.Name(), Addr: b.Addr()},
		registry.WithTTL(ttl), registry.WithLogger(testlog.New(t)), registry.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })
	return reg
}

func etcdClient(t *testing.T, cli *clientv3.Client, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{
		client.WithEtcdClient(cli), client.WithLogger(testlog.New(t)), fastProbe(),
		client.WithResolverOptions(resolver.WithEtcdHealthCheck(500*time.Millisecond, time.Second), resolver.WithBackoff(50*time.Millisecond, 500*time.Millisecond)),
	}, opts...)
	c, err := client.New("etcd:///api", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// The etcd leader killed under steady traffic (3 members): no request
// fails, registrations stay, and the watch resumes (a backend registered
// afterwards gets traffic).
func TestFaultEtcdLeaderKilledUnderTraffic(t *testing.T) {
	cluster := etcdtest.Start(t, etcdtest.WithMembers(3))
	cli := cluster.Client(t)
	bs, regs := etcdBackends(t, cli, 3, 5*time.Second)
	c := etcdClient(t, cli)
	s := startSteady(c, 4)
	for _, b := range bs {
		s.waitServed(t, readyTimeout, b.Name())
	}

	leader := cluster.Leader(t)
	leader.Kill(t)
	t.Logf("killed the leader %s", leader.Name())
	waitFor(t, readyTimeout, "a new leader", func() bool {
		for _, m := range cluster.Members() {
			if m != leader && m.Running() && m.IsLeader() {
				return true
			}
		}
		return false
	})
	fresh := testbackend.MustHTTP(t, testbackend.WithName("late"), testbackend.WithLatency(time.Millisecond))
	registerBackend(t, cli, fresh, 5*time.Second)
	s.waitServed(t, readyTimeout, "late")
	for _, r := range regs {
		if st := r.State(); st != registry.Registered {
			t.Errorf("registration %s: %v after the leader was killed", r.Key(), st)
		}
	}
	leader.Restart(t)
	s.end(t)
}

// All of etcd down for longer than the lease TTL, then back: the client
// keeps routing on the last known set the whole time, the registrations
// come back by themselves, and the resolver converges.
func TestFaultEtcdDownLongerThanTheTTL(t *testing.T) {
	cluster := etcdtest.Start(t)
	cli := cluster.Client(t)
	const ttl = 2 * time.Second
	bs, regs := etcdBackends(t, cli, 3, ttl)
	c := etcdClient(t, cli)
	s := startSteady(c, 3)
	for _, b := range bs {
		s.waitServed(t, readyTimeout, b.Name())
	}

	cluster.Stop(t)
	down := time.Now()
	t.Logf("etcd down at %s", down.Format("15:04:05.000"))
	waitFor(t, readyTimeout, "the registrations to see the outage", func() bool {
		return regs[0].State() == registry.Lost
	})
	// Keep etcd down past the TTL while traffic flows on the last set.
	for time.Since(down) < ttl+time.Second {
		before := s.sent.Load()
		waitFor(t, readyTimeout, "requests to flow while etcd is down", func() bool { return s.sent.Load() > before+10 })
	}
	for _, b := range bs {
		s.waitServed(t, readyTimeout, b.Name())
	}
	cluster.Restart(t)
	t.Logf("etcd back at %s", time.Now().Format("15:04:05.000"))

	for _, r := range regs {
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		for r.State() != registry.Registered && r.WaitForStateChange(ctx, r.State()) {
		}
		cancel()
		if r.State() != registry.Registered {
			t.Fatalf("registration %s did not come back: %v (%v)", r.Key(), r.State(), r.Err())
		}
	}
	fresh := testbackend.MustHTTP(t, testbackend.WithName("late"), testbackend.WithLatency(time.Millisecond))
	registerBackend(t, cli, fresh, ttl)
	s.waitServed(t, readyTimeout, "late")
	s.end(t)
}

// Backends crashing, blackholed, answering byte by byte and resetting
// connections: traffic leaves them and no idempotent request fails.
func TestFaultBackendFaultsCostNoFailedRequest(t *testing.T) {
	bs := backends(t, 5, time.Millisecond)
	proxies := make([]*testbackend.Proxy, len(bs))
	addrs := make([]string, len(bs))
	for i, b := range bs {
		proxies[i] = testbackend.MustProxy(t, b.Addr())
		addrs[i] = proxies[i].Addr()
	}
	// A per-try timeout of 2 s: a loaded 2-core machine has stalled this
	// process for 2 s, and with 500 ms healthy backends timed out and were
	// ejected before any fault, leaving too few to retry on.
	// Four retries: four backends turn bad at once, and until a request
	// has seen one fail nothing tells the client so (a backend whose
	// connections are reset looks fast). A retry avoids only what its own
	// request tried, so a request may meet all four bad backends before
	// b4 (with three retries, 3 runs in 25 on a loaded machine lost one).
	c := staticClient(t, endpointsOf(addrs...), fastProbe(),
		client.WithOutlierDetection(client.OutlierDetection{ConsecutiveFailures: 2, BaseEjectionTime: 10 * time.Second, MaxEjectedShare: 0.8}),
		client.WithRetries(client.RetryPolicy{MaxRetries: len(bs) - 1, PerTryTimeout: 2 * time.Second}))
	s := startSteady(c, 4)
	for _, b := range bs {
		s.waitServed(t, readyTimeout, b.Name())
	}
	faults := []struct {
		name   string
		inject func() error
	}{
		{"crash", bs[0].Stop},
		{"blackhole", proxies[1].Blackhole},
		{"byte by byte", func() error { return proxies[2].Slicer(1, 0, 20*time.Millisecond) }},
		{"reset", func() error { return proxies[3].ResetPeer(0) }},
	}
	for i, f := range faults {
		if err := f.inject(); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		t.Logf("fault %s on %s", f.name, bs[i].Name())
		// Traffic goes on; wait for a healthy backend to take some more.
		s.waitServed(t, readyTimeout, "b4")
	}
	// Traffic has left the faulty backends: b4 takes everything now.
	waitFor(t, readyTimeout, "traffic to leave the faulty backends", func() bool {
		before := make([]int64, 4)
		for i := range before {
			before[i] = s.served(bs[i].Name())
		}
		b4 := s.served("b4")
		s.waitServed(t, readyTimeout, "b4")
		for range 20 {
			s.waitServed(t, readyTimeout, "b4")
		}
		for i := range before {
			if s.served(bs[i].Name()) != before[i] {
				return false
			}
		}
		return s.served("b4") > b4
	})
	s.end(t)
}

// When every registration vanishes (leases expired during an etcd outage),
// the client keeps routing on what it had left for the grace period, and
// drops it when the set stays empty.
func TestFaultEmptySetIsHeldForTheGracePeriod(t *testing.T) {
	cluster := etcdtest.Start(t)
	cli := cluster.Client(t)
	bs, regs := etcdBackends(t, cli, 2, 5*time.Second)
	// Long enough for the checks made within it (keys gone, 20 requests,
	// the table read) to finish inside it on a loaded machine.
	const grace = 5 * time.Second
	c := etcdClient(t, cli, client.WithEmptySetGrace(grace))
	s := startSteady(c, 2)
	for _, b := range bs {
		s.waitServed(t, readyTimeout, b.Name())
	}
	start := time.Now()
	for _, r := range regs {
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The deletions arrive one by one: the set shrinks, then the last
	// endpoint is held rather than dropped, and requests keep succeeding
	// on it...
	waitFor(t, grace, "every key to be gone", func() bool {
		resp, err := cli.Get(context.Background(), "/services/api/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 0
	})
	sent := s.sent.Load()
	waitFor(t, grace, "requests to go on", func() bool { return s.sent.Load() > sent+20 })
	if n := len(c.Endpoints()); n == 0 {
		t.Fatal("the last endpoint was dropped at once")
	}
	// ...until the grace period ends.
	close(s.stop)
	s.wg.Wait()
	if s.failed.Load() > 0 {
		t.Fatalf("requests failed during the grace period: %v", s.errs)
	}
	waitFor(t, 3*grace, "the empty set to apply", func() bool { return len(c.Endpoints()) == 0 })
	if held := time.Since(start); held < grace {
		t.Fatalf("the empty set applied after %v, before the %v grace period", held, grace)
	}
}
