package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

var registerBalancer sync.Once

// grpcEnv is a real etcd with gRPC servers registered in it under the
// service "echo".
type grpcEnv struct {
	t   *testing.T
	cli *clientv3.Client
}

func newGRPCEnv(t *testing.T) *grpcEnv {
	registerBalancer.Do(func() { client.RegisterGRPCBalancer() })
	c := etcdtest.Start(t)
	return &grpcEnv{t: t, cli: c.Client(t)}
}

// serve starts a gRPC server with latency d and registers it.
func (e *grpcEnv) serve(name string, d time.Duration) (*testbackend.GRPC, *registry.Registration) {
	e.t.Helper()
	b := testbackend.MustGRPC(e.t, testbackend.WithName(name), testbackend.WithLatency(d))
	return b, e.register(name, b.Addr())
}

func (e *grpcEnv) register(id, addr string) *registry.Registration {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	reg, err := registry.Register(ctx, e.cli, registry.Instance{Service: "echo", ID: id, Addr: addr}, registry.WithTTL(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { reg.Close(context.Background()) })
	return reg
}

// dial returns a connection to etcd:///echo through the smartroute
// balancer with the given balancer config and extra service config.
func (e *grpcEnv) dial(lbConfig string, extra string) testpb.TestServiceClient {
	e.t.Helper()
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{"smartroute":%s}]%s}`, lbConfig, extra)
	conn, err := grpc.NewClient("etcd:///echo",
		grpc.WithResolvers(resolver.NewGRPCBuilder(e.cli, resolver.WithLogger(testlog.New(e.t)))),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// call makes one unary RPC and returns the server's name.
func call(ctx context.Context, c testpb.TestServiceClient, opts ...grpc.CallOption) (string, error) {
	var md metadata.MD
	_, err := c.EmptyCall(ctx, &testpb.Empty{}, append(opts, grpc.Header(&md))...)
	if v := md.Get("x-backend"); len(v) > 0 {
		return v[0], err
	}
	return "", err
}

// rpcs makes n RPCs from workers goroutines and tallies the servers.
func rpcs(ctx context.Context, c testpb.TestServiceClient, n, workers int, during func(), opts ...grpc.CallOption) *tally {
	return drive(ctx, n, workers, during, func() (string, error) { return call(ctx, c, opts...) })
}

// reachEvery sends wait-for-ready RPCs from one goroutine until every one of
// bs has answered one, which shows that its connection is READY and in the
// balancer's picker; it fails t if an RPC fails or readyTimeout passes. A
// test that counts where RPCs go starts from there, not from a fixed number
// of RPCs: on a busy machine, the first connections may be READY well
// before the last.
func reachEvery(ctx context.Context, t *testing.T, c testpb.TestServiceClient, bs ...*testbackend.GRPC) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tl := newTally()
	for {
		missing := ""
		for _, b := range bs {
			if tl.by[b.Name()] == 0 {
				missing = b.Name()
				break
			}
		}
		if missing == "" {
			return
		}
		tl.add(call(ctx, c, grpc.WaitForReady(true)))
		if tl.failed > 0 {
			t.Fatalf("waiting for every server to take an RPC (%s has none): %v", missing, tl)
		}
	}
}

const fastGRPCProbe = `"probe":{"kind":"tcp","interval":"25ms","rise":1,"fall":1}`

// With three servers, one much slower, least_latency sends it few RPCs;
// when the latencies swap, traffic follows.
func TestGRPCBalancerAvoidsTheSlowServerAndFollowsASwap(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	e := newGRPCEnv(t)
	var bs []*testbackend.GRPC
	for i := range 3 {
		b, _ := e.serve(fmt.Sprintf("s%d", i), 2*time.Millisecond)
		bs = append(bs, b)
	}
	// The slow server is 100 ms slower: on a loaded 2-core machine with the
	// race detector, the fast servers' own RPCs often take tens of
	// milliseconds, and with one of the two fast servers briefly estimated
	// slow after such a spike, a smaller gap would measure the machine,
	// not the balancer (the routing benchmarks measure a 20 ms gap on a
	// quiet one).
	const slow = 102 * time.Millisecond
	bs[2].SetLatency(slow)
	// A 2 s latency decay (default 10 s) so that the swap is followed
	// within the test's patience even on a loaded machine.
	c := e.dial(`{"policy":"least_latency","latencyDecay":"2s",`+fastGRPCProbe+`}`, "")
	reachEvery(ctx, t, c, bs...)

	// Two callers: with more, the cost model (latency × (in-flight + 1))
	// rightly sends some calls to the slow server while the fast ones are
	// each several calls deep.
	tl := rpcs(ctx, c, 300, 2, nil)
	if tl.failed > 0 {
		t.Fatal(tl)
	}
	// Round robin would send it a third.
	if s := tl.share("s2"); s > 0.10 {
		t.Errorf("slow server took %.1f%% of RPCs: %v", 100*s, tl)
	}
	t.Logf("before the swap: %v", tl)

	bs[2].SetLatency(2 * time.Millisecond)
	bs[0].SetLatency(slow)
	start := time.Now()
	for {
		tl = rpcs(ctx, c, 100, 2, nil)
		if tl.failed > 0 {
			t.Fatal(tl)
		}
		if tl.share("s0") <= 0.10 && tl.share("s2") >= 0.10 {
			break
		}
		if time.Since(start) > readyTimeout || ctx.Err() != nil {
			t.Fatalf("traffic did not follow the swap after %v: %v", time.Since(start), tl)
		}
	}
	t.Logf("traffic followed the swap within %v: %v", time.Since(start).Round(time.Millisecond), tl)
}

// A server registered while the client runs gets RPCs quickly; draining
// and deregistered servers get none.
func TestGRPCBalancerFollowsRegistrations(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	e := newGRPCEnv(t)
	s0, _ := e.serve("s0", 0)
	c := e.dial(`{"policy":"round_robin",`+fastGRPCProbe+`}`, "")
	reachEvery(ctx, t, c, s0)
	if tl := rpcs(ctx, c, 10, 1, nil); tl.failed > 0 {
		t.Fatal(tl)
	}

	fresh := testbackend.MustGRPC(t, testbackend.WithName("s1"))
	start := time.Now()
	reg := e.register("s1", fresh.Addr())
	var took time.Duration
	for fresh.Requests() == 0 {
		if _, err := call(ctx, c); err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
		if took > readyTimeout {
			t.Fatalf("the new server got no RPC within %v", readyTimeout)
		}
	}
	t.Logf("new server's first RPC %v after its registration", took)
	if took > time.Second {
		t.Errorf("the new server got its first RPC %v after registration, want well under a second", took)
	}

	// Draining: no new RPCs once the resolver delivered the change.
	if err := reg.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	waitQuiet := func(b *testbackend.GRPC, what string) {
		t.Helper()
		waitFor(t, readyTimeout, what, func() bool {
			before := b.Requests()
			tl := rpcs(ctx, c, 20, 1, nil)
			return tl.failed == 0 && b.Requests() == before
		})
		before := b.Requests()
		if tl := rpcs(ctx, c, 50, 2, nil); tl.failed > 0 || b.Requests() != before {
			t.Fatalf("%s: %d RPCs still reached it: %v", what, b.Requests()-before, tl)
		}
	}
	waitQuiet(fresh, "a draining server to stop receiving RPCs")

	// Deregistered: likewise.
	s2 := testbackend.MustGRPC(t, testbackend.WithName("s2"))
	reg2 := e.register("s2", s2.Addr())
	waitFor(t, readyTimeout, "s2 to receive RPCs", func() bool {
		_, _ = call(ctx, c)
		return s2.Requests() > 0
	})
	if err := reg2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitQuiet(s2, "a deregistered server to stop receiving RPCs")
}

// A server that stops costs no failed RPC: an orderly stop (GOAWAY, calls
// in flight finish) costs none to wait-for-ready calls; a crash (calls in
// flight cut) costs none to calls under a retry policy.
func TestGRPCBalancerStoppedServerCostsNoFailedRPC(t *testing.T) {
	const retry = `,"methodConfig":[{"name":[{"service":"grpc.testing.TestService"}],
		"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]`
	for _, tc := range []struct {
		name  string
		extra string
		opts  []grpc.CallOption
		stop  func(*testbackend.GRPC) error
	}{
		{"graceful stop, wait-for-ready", "", []grpc.CallOption{grpc.WaitForReady(true)}, (*testbackend.GRPC).GracefulStop},
		{"crash, retry policy", retry, nil, (*testbackend.GRPC).Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			e := newGRPCEnv(t)
			var bs []*testbackend.GRPC
			for i := range 3 {
				b, _ := e.serve(fmt.Sprintf("s%d", i), time.Millisecond)
				bs = append(bs, b)
			}
			c := e.dial(`{"policy":"round_robin",`+fastGRPCProbe+`}`, tc.extra)
			// Every server READY first: the stop must hit a server that
			// takes its share.
			reachEvery(ctx, t, c, bs...)
			tl := rpcs(ctx, c, 400, 4, func() {
				if err := tc.stop(bs[1]); err != nil {
					t.Error(err)
				}
			}, tc.opts...)
			if tl.failed > 0 {
				t.Fatalf("failed RPCs after a server stopped: %v", tl)
			}
			if tl.by["s1"] == 0 {
				t.Fatalf("the stopped server took no RPC before it stopped: %v", tl)
			}
		})
	}
}

// A server whose health service reports NOT_SERVING is avoided, through
// gRPC's client-side health checking or through the balancer's own gRPC
// health probe.
func TestGRPCBalancerAvoidsNotServing(t *testing.T) {
	for _, tc := range []struct{ name, lb, extra string }{
		{"client-side health checking", `{"policy":"round_robin","probe":{"kind":"none"}}`, `,"healthCheckConfig":{"serviceName":""}`},
		// Three failed checks before a server counts as unhealthy, each
		// allowed 5 s: every check dials the server anew, which on a loaded
		// machine with the race detector can take over a second, and two
		// healthy servers called unhealthy at once would put the balancer
		// in panic mode (it then picks among all three, s0 included).
		{"probe", `{"policy":"round_robin","probe":{"kind":"grpc","interval":"50ms","timeout":"5s","rise":1,"fall":3}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, 90*time.Second)
			e := newGRPCEnv(t)
			var bs []*testbackend.GRPC
			for i := range 3 {
				b, _ := e.serve(fmt.Sprintf("s%d", i), 0)
				bs = append(bs, b)
			}
			c := e.dial(tc.lb, tc.extra)
			// Every server READY and taking RPCs first, s0 included, so
			// that avoiding s0 afterwards is the health check's doing.
			reachEvery(ctx, t, c, bs...)
			bs[0].SetServing("", false)
			waitFor(t, readyTimeout, "the NOT_SERVING server to be avoided", func() bool {
				before := bs[0].Requests()
				tl := rpcs(ctx, c, 20, 1, nil)
				return tl.failed == 0 && bs[0].Requests() == before
			})
			before := bs[0].Requests()
			if tl := rpcs(ctx, c, 60, 2, nil); tl.failed > 0 || bs[0].Requests() != before {
				t.Fatalf("NOT_SERVING server got %d RPCs: %v", bs[0].Requests()-before, tl)
			}
		})
	}
}
