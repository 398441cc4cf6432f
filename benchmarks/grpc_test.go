package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/leastrequest"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/serviceconfig"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// grpcContender is a load-balancing policy of the gRPC comparison: its
// registered name and its loadBalancingConfig.
type grpcContender struct {
	name   string // sub-benchmark name
	lb     string // balancer name in the service config
	config string // its JSON config
}

// grpcContenders are the smartroute balancer (default policy) and grpc-go's
// own: round_robin, least_request (P2C on outstanding RPCs) and, when built
// with -tags grpcwrr, weighted_round_robin (grpc_wrr_test.go).
func grpcContenders() []grpcContender {
	return append([]grpcContender{
		{"smartroute", client.GRPCBalancerName, fmt.Sprintf(`{"policy":%q}`, client.DefaultPolicy)},
		{"round_robin", roundrobin.Name, `{}`},
		{"least_request", leastrequest.Name, `{"choiceCount":2}`},
	}, moreContenders...)
}

// moreContenders are contenders whose packages need modules this module
// may not require; files behind build tags add them.
var moreContenders []grpcContender

// registerGRPC registers, once per process, the smartroute balancer and a
// capturing wrapper around every contender (see captureBuilder). gRPC keeps
// balancers in a process-wide map, so there is no other way.
var registerGRPC = sync.OnceFunc(func() {
	client.RegisterGRPCBalancer(client.WithLogger(discard))
	for _, c := range grpcContenders() {
		balancer.Register(&captureBuilder{inner: balancer.Get(c.lb)})
	}
})

// dialGRPC connects to addrs through a manual resolver, so that every
// contender gets the very same endpoint list, with balancer lb configured by
// config.
func dialGRPC(tb testing.TB, addrs []string, lb, config string) *grpc.ClientConn {
	tb.Helper()
	eps := make([]grpcresolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: a}}}
	}
	r := manual.NewBuilderWithScheme("bench")
	r.InitialState(grpcresolver.State{Endpoints: eps})
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{%q:%s}]}`, lb, config)
	conn, err := grpc.NewClient("bench:///echo", grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	return conn
}

// grpcServers starts n gRPC backends named s0…s(n-1) with latency d and
// opts.
func grpcServers(tb testing.TB, n int, d time.Duration, opts ...testbackend.Option) ([]*testbackend.GRPC, []string) {
	tb.Helper()
	bs := make([]*testbackend.GRPC, n)
	addrs := make([]string, n)
	for i := range bs {
		bs[i] = testbackend.MustGRPC(tb, append([]testbackend.Option{testbackend.WithName(fmt.Sprintf("s%d", i)), testbackend.WithLatency(d)}, opts...)...)
		addrs[i] = bs[i].Addr()
	}
	return bs, addrs
}

// warmUp makes n wait-for-ready RPCs so the connections are open.
func warmUp(tb testing.TB, c testpb.TestServiceClient, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range n {
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true)); err != nil {
			tb.Fatalf("warm-up RPC: %v", err)
		}
	}
}

// BenchmarkGRPCOverhead measures what each balancer adds to a unary RPC:
// EmptyCall from every core to three loopback servers that answer at once
// (ns/op, allocs/op; client and server both run in this process, so allocs
// include the server's).
func BenchmarkGRPCOverhead(b *testing.B) {
	registerGRPC()
	_, addrs := grpcServers(b, 3, 0)
	for _, ct := range grpcContenders() {
		b.Run("lb="+ct.name, func(b *testing.B) {
			conn := dialGRPC(b, addrs, ct.lb, ct.config)
			defer conn.Close()
			c := testpb.NewTestServiceClient(conn)
			warmUp(b, c, 100)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGRPCRouting measures routing quality with five loopback gRPC
// servers, one 20 ms slower (s4), that send ORCA load reports (requests in
// flight, qps, utilization) with every answer: 800 RPCs from 4 goroutines
// through a fresh connection per iteration; ms-mean, ms-p50, ms-p99 and
// worst-share (the share of RPCs s4 served).
func BenchmarkGRPCRouting(b *testing.B) {
	const (
		n       = 800
		workers = 4
	)
	registerGRPC()
	// A capacity (never reached) so that the reports carry the utilization
	// weighted_round_robin needs.
	bs, addrs := grpcServers(b, 5, 2*time.Millisecond, testbackend.WithLoadReport(), testbackend.WithCapacity(64))
	bs[4].SetLatency(22 * time.Millisecond)
	for _, ct := range grpcContenders() {
		b.Run("lb="+ct.name, func(b *testing.B) {
			var (
				lat   []time.Duration
				worst []float64
				fails int
			)
			for b.Loop() {
				b.StopTimer()
				conn := dialGRPC(b, addrs, ct.lb, ct.config)
				c := testpb.NewTestServiceClient(conn)
				warmUp(b, c, 1)
				b.StartTimer()
				samples := rpcLoad(c, n, workers)
				b.StopTimer()
				conn.Close()
				for _, s := range samples {
					if s.backend >= 0 {
						lat = append(lat, s.latency)
					}
				}
				share, failed := shares(samples, len(bs))
				fails += failed
				worst = append(worst, share[4])
				b.StartTimer()
			}
			reportLatency(b, lat)
			b.ReportMetric(meanFloat(worst), "worst-share")
			if fails > 0 {
				b.ReportMetric(float64(fails)/float64(b.N), "errors/op")
			}
		})
	}
}

// rpcLoad makes n EmptyCalls from workers goroutines and returns a sample
// per RPC (the backend from the x-backend header: s3 is 3).
func rpcLoad(c testpb.TestServiceClient, n, workers int) []sample {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		next atomic.Int64
		mu   sync.Mutex
		all  = make([]sample, 0, n)
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			local := make([]sample, 0, n/workers+1)
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				var md metadata.MD
				t0 := time.Now()
				_, err := c.EmptyCall(ctx, &testpb.Empty{}, grpc.Header(&md))
				s := sample{start: t0.Sub(start), latency: time.Since(t0), backend: -1}
				if v := md.Get("x-backend"); err == nil && len(v) > 0 && len(v[0]) > 1 {
					s.backend = backendIndex("b" + v[0][1:])
				}
				local = append(local, s)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// BenchmarkGRPCPicker measures the pickers alone, without an RPC, from
// every core at once: each contender runs inside a real ClientConn connected
// to three loopback servers, wrapped so that the benchmark gets hold of the
// picker it publishes (captureBuilder); the loop calls Pick and Done as gRPC
// would.
func BenchmarkGRPCPicker(b *testing.B) { benchGRPCPicker(b, true) }

// BenchmarkGRPCPickerSerial is BenchmarkGRPCPicker from one goroutine.
func BenchmarkGRPCPickerSerial(b *testing.B) { benchGRPCPicker(b, false) }

func benchGRPCPicker(b *testing.B, parallel bool) {
	registerGRPC()
	_, addrs := grpcServers(b, 3, 0)
	for _, ct := range grpcContenders() {
		b.Run("lb="+ct.name, func(b *testing.B) {
			cb := balancer.Get(captureName(ct.lb)).(*captureBuilder)
			conn := dialGRPC(b, addrs, captureName(ct.lb), ct.config)
			defer conn.Close()
			warmUp(b, testpb.NewTestServiceClient(conn), 30)
			p := cb.readyPicker(b, len(addrs))
			info := balancer.PickInfo{FullMethodName: "/grpc.testing.TestService/EmptyCall", Ctx: context.Background()}
			pick := func() bool {
				res, err := p.Pick(info)
				if err != nil {
					b.Error(err)
					return false
				}
				if res.Done != nil {
					res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
				}
				return true
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for b.Loop() {
					if !pick() {
						return
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !pick() {
						return
					}
				}
			})
		})
	}
}

func captureName(lb string) string { return "capture_" + lb }

// captureBuilder wraps a registered balancer and keeps the last state (and
// so picker) it publishes. It is registered as capture_<name>; one
// ClientConn at a time uses it.
type captureBuilder struct {
	inner   balancer.Builder
	current atomic.Pointer[captureCC] // of the last balancer built
	state   atomic.Pointer[balancer.State]
}

func (c *captureBuilder) Name() string { return captureName(c.inner.Name()) }

func (c *captureBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	cc2 := &captureCC{ClientConn: cc, b: c}
	c.current.Store(cc2)
	c.state.Store(nil)
	return c.inner.Build(cc2, opts)
}

// ParseConfig hands the config to the wrapped balancer's parser, if any.
func (c *captureBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	if p, ok := c.inner.(balancer.ConfigParser); ok {
		return p.ParseConfig(js)
	}
	return nil, nil
}

// readyPicker waits (at most 10 s) until the published picker is READY and
// picks without error, and returns it. It waits up to 2 s more for a
// picker that spreads picks over all n backends, as round_robin's does once
// every connection is up; least_latency may rightly keep to the fastest.
func (c *captureBuilder) readyPicker(tb testing.TB, n int) balancer.Picker {
	tb.Helper()
	info := balancer.PickInfo{FullMethodName: "/grpc.testing.TestService/EmptyCall", Ctx: context.Background()}
	start := time.Now()
	var (
		ready      balancer.Picker
		readySince time.Time
	)
	for time.Since(start) < 10*time.Second {
		if s := c.state.Load(); s != nil && s.ConnectivityState == connectivity.Ready {
			var seen []balancer.SubConn
			ok := true
			for range 50 * n {
				res, err := s.Picker.Pick(info)
				if err != nil {
					ok = false
					break
				}
				if res.Done != nil {
					res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
				}
				if !slices.Contains(seen, res.SubConn) {
					seen = append(seen, res.SubConn)
				}
			}
			if ok && len(seen) == n {
				return s.Picker
			}
			if ok {
				if ready == nil {
					readySince = time.Now()
				}
				ready = s.Picker
				if time.Since(readySince) > 2*time.Second {
					return ready
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // poll: the picker is published asynchronously
	}
	if ready != nil {
		return ready
	}
	tb.Fatalf("%s: no READY picker within 10s", c.Name())
	return nil
}

// captureCC passes everything to the real ClientConn and records the
// states published through it, unless a newer balancer was built since (a
// closed balancer may still publish from its own goroutines).
type captureCC struct {
	balancer.ClientConn
	b *captureBuilder
}

func (c *captureCC) UpdateState(s balancer.State) {
	if c.b.current.Load() == c {
		c.b.state.Store(&s)
	}
	c.ClientConn.UpdateState(s)
}
