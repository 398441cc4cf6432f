package benchmarks

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// Discovery figures are timed over discoveryReps events per iteration;
// an event is over once nothing happened for discoveryQuiet.
const (
	discoveryReps  = 10
	discoveryQuiet = 200 * time.Millisecond
	discoveryTTL   = 5 * time.Second
	discoverySvc   = "disc"
)

// BenchmarkDiscovery times how fast changes in a real etcd reach traffic.
// A smartroute client over etcd:///disc (round_robin, so that any endpoint
// in the table gets every other request at once: the figure is discovery,
// not policy) sends GETs without pause from two goroutines to two
// registered backends, b0 (always there) and b1; then, discoveryReps times:
//
//   - event=register: registry.Register of b1 → the first request b1
//     receives;
//   - event=deregister: Registration.Close (lease revoked) → the last
//     request b1 receives;
//   - event=drain: Registration.Drain → the last request b1 receives;
//   - event=kill: b1 stops at once, as a crash (still registered) → the
//     last request that failed, with the default retries (errors/op counts
//     the failed requests per kill: a killed backend should cost none, and
//     then no latency is reported);
//   - event=kill_noretry: the same with retries off, so every request the
//     client still sends to b1 fails: how long it keeps trying.
//
// Figures: ms-p50, ms-p99 (nearest rank, so the slowest of ten) and
// ms-mean over the events.
func BenchmarkDiscovery(b *testing.B) {
	cluster := etcdtest.Start(b)
	cli := cluster.Client(b)
	var arrivals arrivals
	b0 := testbackend.MustHTTP(b, testbackend.WithName("b0"))
	b1 := testbackend.MustHTTP(b, testbackend.WithName("b1"), testbackend.WithHandler(&arrivals))
	ctx := context.Background()
	register(b, cli, b0.Addr())

	b.Run("event=register", func(b *testing.B) {
		runDiscovery(b, func(b *testing.B) time.Duration {
			ld := startLoad(b, cli)
			defer ld.stop()
			arrivals.reset()
			t0 := time.Now()
			reg := register(b, cli, b1.Addr())
			defer reg.Close(context.Background())
			if !waitFor(5*time.Second, func() bool { return arrivals.first.Load() != 0 }) {
				b.Fatal("b1 got no request within 5s of its registration")
			}
			return time.Duration(arrivals.first.Load() - t0.UnixNano())
		})
	})
	b.Run("event=deregister", func(b *testing.B) {
		runDiscovery(b, func(b *testing.B) time.Duration {
			ld := startLoad(b, cli)
			defer ld.stop()
			reg := registered(b, cli, b1.Addr(), &arrivals)
			t0 := time.Now()
			if err := reg.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			return arrivals.lastAfter(b, t0)
		})
	})
	b.Run("event=drain", func(b *testing.B) {
		runDiscovery(b, func(b *testing.B) time.Duration {
			ld := startLoad(b, cli)
			defer ld.stop()
			reg := registered(b, cli, b1.Addr(), &arrivals)
			defer reg.Close(context.Background())
			t0 := time.Now()
			if err := reg.Drain(ctx); err != nil {
				b.Fatal(err)
			}
			return arrivals.lastAfter(b, t0)
		})
	})
	for _, retries := range []bool{true, false} {
		name := "event=kill"
		opts := []client.Option(nil)
		if !retries {
			name = "event=kill_noretry"
			opts = append(opts, client.WithRetries(client.RetryPolicy{Disabled: true}))
		}
		b.Run(name, func(b *testing.B) {
			var failures int64
			runDiscovery(b, func(b *testing.B) time.Duration {
				reg := register(b, cli, b1.Addr())
				defer reg.Close(context.Background())
				ld := startLoad(b, cli, opts...)
				defer ld.stop()
				arrivals.reset()
				if !waitFor(5*time.Second, func() bool { return arrivals.first.Load() != 0 }) {
					b.Fatal("b1 got no request within 5s")
				}
				t0 := time.Now()
				if err := b1.Stop(); err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := b1.Restart(); err != nil {
						b.Fatal(err)
					}
				}()
				quiet(func() int64 { return ld.lastFailure.Load() })
				failures += ld.failures.Load()
				if last := ld.lastFailure.Load(); last != 0 {
					return time.Duration(max(0, last-t0.UnixNano()))
				}
				return 0
			})
			b.ReportMetric(float64(failures)/float64(b.N*discoveryReps), "errors/op")
		})
	}
}

// runDiscovery times discoveryReps events per iteration and reports them,
// unless every one took 0 (kill with retries: no request failed).
func runDiscovery(b *testing.B, event func(b *testing.B) time.Duration) {
	var ds []time.Duration
	for b.Loop() {
		for range discoveryReps {
			ds = append(ds, event(b))
		}
	}
	if slices.Max(ds) > 0 {
		reportLatency(b, ds)
	}
}

// register registers addr as an instance of discoverySvc.
func register(b *testing.B, cli *clientv3.Client, addr string) *registry.Registration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := registry.Register(ctx, cli, registry.Instance{Service: discoverySvc, ID: addr, Addr: addr},
		registry.WithTTL(discoveryTTL), registry.WithLogger(discard))
	if err != nil {
		b.Fatal(err)
	}
	return reg
}

// registered registers addr and waits until it takes requests.
func registered(b *testing.B, cli *clientv3.Client, addr string, a *arrivals) *registry.Registration {
	b.Helper()
	a.reset()
	reg := register(b, cli, addr)
	if !waitFor(5*time.Second, func() bool { return a.first.Load() != 0 }) {
		reg.Close(context.Background())
		b.Fatal("no request within 5s of the registration")
	}
	return reg
}

// arrivals is an HTTP handler that records when the first and the last
// request arrived (Unix ns).
type arrivals struct{ first, last atomic.Int64 }

func (a *arrivals) ServeHTTP(http.ResponseWriter, *http.Request) {
	now := time.Now().UnixNano()
	a.first.CompareAndSwap(0, now)
	a.last.Store(now)
}

func (a *arrivals) reset() { a.first.Store(0); a.last.Store(0) }

// lastAfter waits until no request arrived for discoveryQuiet and returns
// how long after t0 the last one arrived (0 if before t0).
func (a *arrivals) lastAfter(b *testing.B, t0 time.Time) time.Duration {
	if !quiet(a.last.Load) {
		b.Fatal("requests still arrive 5s after the change")
	}
	return time.Duration(max(0, a.last.Load()-t0.UnixNano()))
}

// quiet waits (at most 5 s) until the Unix-ns time that last returns is
// discoveryQuiet old, or zero for that long.
func quiet(last func() int64) bool {
	start := time.Now()
	return waitFor(5*time.Second, func() bool {
		l := last()
		if l == 0 {
			return time.Since(start) >= discoveryQuiet
		}
		return time.Since(time.Unix(0, l)) >= discoveryQuiet
	})
}

// waitFor polls cond every millisecond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) // poll, bounded by timeout
	}
	return true
}

// load is a fresh smartroute client over etcd:///disc, ready (its first
// endpoint set read), sending GETs without pause from two goroutines until
// stop; it counts failed requests and records when the last one failed.
type load struct {
	c           *client.Client
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	failures    atomic.Int64
	lastFailure atomic.Int64
}

func startLoad(b *testing.B, cli *clientv3.Client, opts ...client.Option) *load {
	b.Helper()
	opts = append([]client.Option{
		client.WithEtcdClient(cli),
		client.WithLogger(discard),
		client.WithPolicy(client.RoundRobin),
		client.WithTransport(baseTransport()),
	}, opts...)
	c, err := client.New("etcd:///"+discoverySvc, opts...)
	if err != nil {
		b.Fatal(err)
	}
	// Ready means the first endpoint set arrived: later changes come
	// through the watch, which is what the events time.
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if err := c.WaitReady(rctx); err != nil {
		c.Close()
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ld := &load{c: c, cancel: cancel}
	tg := target{rt: c, url: "http://" + discoverySvc + "/"}
	for range 2 {
		ld.wg.Go(func() {
			for i := int64(0); ctx.Err() == nil; i++ {
				if get(ctx, tg, i) < 0 && ctx.Err() == nil {
					ld.failures.Add(1)
					ld.lastFailure.Store(time.Now().UnixNano())
				}
			}
		})
	}
	return ld
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	l.c.Close()
}
