package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/resolver"
)

// Overload protection in the gRPC balancer, configured by the service
// config's "overload", against real gRPC servers registered in a real etcd.

// dialWith is grpcEnv.dial with extra dial options (interceptors).
func (e *grpcEnv) dialWith(lbConfig string, opts ...grpc.DialOption) testpb.TestServiceClient {
	e.t.Helper()
	sc := fmt.Sprintf(`{"loadBalancingConfig":[{"smartroute":%s}]}`, lbConfig)
	conn, err := grpc.NewClient("etcd:///echo", append([]grpc.DialOption{
		grpc.WithResolvers(resolver.NewGRPCBuilder(e.cli, resolver.WithLogger(testlog.New(e.t)))),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return testpb.NewTestServiceClient(conn)
}

// hammerRPCs calls from workers goroutines until stop is closed.
func hammerRPCs(ctx context.Context, c testpb.TestServiceClient, workers int, stop <-chan struct{}, each func(error)) (wait func()) {
	return untilStopped(ctx, workers, stop, func() (refused bool) {
		_, err := call(ctx, c)
		each(err)
		return status.Code(err) == codes.Unavailable
	})
}

func requestsOf(bs []*testbackend.GRPC) int64 {
	var n int64
	for _, b := range bs {
		n += b.Requests()
	}
	return n
}

// The seed's scenario through the gRPC balancer: a service whose answers
// turn slower than 800 ms opens its slow-call breaker within one stat
// window; RPCs then fail at once with codes.Unavailable and a message that
// names the breaker, wait-for-ready or not, or get the fallback of
// OverloadFallbackInterceptor, and reach no server; once it is fast again,
// half-open probes close it.
func TestGRPCOverloadSlowServiceBreakerOpensFailsFastAndRecovers(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	e := newGRPCEnv(t)
	var bs []*testbackend.GRPC
	for i := range 3 {
		b, _ := e.serve(fmt.Sprintf("s%d", i), time.Millisecond)
		bs = append(bs, b)
	}
	var useFallback atomic.Bool
	var fellBack atomic.Int64
	fallback := func(ctx context.Context, method string, req, reply any, err error) error {
		if !useFallback.Load() {
			return err
		}
		fellBack.Add(1)
		return nil // an empty answer
	}
	const statWindow = 5 * time.Second
	c := e.dialWith(`{"policy":"round_robin",`+fastGRPCProbe+`,"overload":{"throttling":{"disabled":true},
		"breakers":[{"strategy":"slow_call_ratio","maxRT":"800ms","minRequests":6,"statWindow":"5s","retryTimeout":"5s","probes":2}]}}`,
		grpc.WithUnaryInterceptor(client.OverloadFallbackInterceptor(fallback)))
	if tl := rpcs(ctx, c, 10, 2, nil, grpc.WaitForReady(true)); tl.failed > 0 {
		t.Fatal(tl)
	}

	for _, b := range bs {
		b.SetLatency(900 * time.Millisecond)
	}
	slowAt := time.Now()
	var open atomic.Bool
	stop := make(chan struct{})
	wait := hammerRPCs(ctx, c, 12, stop, func(err error) {
		if strings.Contains(status.Convert(err).Message(), "circuit breaker open") {
			open.Store(true)
		}
	})
	waitFor(t, statWindow, "the service breaker to open within one stat window", open.Load)
	opened := time.Since(slowAt)
	close(stop)
	wait()

	before := requestsOf(bs)
	for i := range 20 {
		var opts []grpc.CallOption
		if i%2 == 0 {
			opts = append(opts, grpc.WaitForReady(true))
		}
		_, err := call(ctx, c, opts...)
		var rej *overload.RejectedError
		if status.Code(err) != codes.Unavailable || !errors.As(err, &rej) || !errors.Is(err, overload.ErrBreakerOpen) {
			t.Fatalf("RPC while the breaker is open: %v, want Unavailable and the service's ErrBreakerOpen", err)
		}
		if i == 0 {
			t.Logf("refused: %v", err)
		}
	}
	useFallback.Store(true)
	for range 10 {
		if _, err := call(ctx, c); err != nil {
			t.Fatalf("RPC with a fallback while the breaker is open: %v", err)
		}
	}
	if n := requestsOf(bs) - before; n != 0 || fellBack.Load() != 10 {
		t.Fatalf("%d RPCs reached the servers and %d got the fallback while the breaker was open; want 0 and 10", n, fellBack.Load())
	}
	t.Logf("opened %v after the slowdown (stat window %v)", opened.Round(time.Millisecond), statWindow)

	useFallback.Store(false)
	for _, b := range bs {
		b.SetLatency(time.Millisecond)
	}
	ok := 0
	waitFor(t, 30*time.Second, "half-open probes to close the breaker", func() bool {
		if _, err := call(ctx, c); err != nil {
			ok = 0
			return false
		}
		ok++
		return ok >= 5 // more than the 2 probes: it is closed
	})
	if tl := rpcs(ctx, c, 30, 3, nil); tl.failed > 0 {
		t.Fatalf("after recovery: %v", tl)
	}
}

// An endpoint breaker takes one slow server out of rotation while the
// others serve.
func TestGRPCOverloadEndpointBreakerTakesTheSlowServerOut(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	e := newGRPCEnv(t)
	var bs []*testbackend.GRPC
	for i := range 3 {
		b, _ := e.serve(fmt.Sprintf("s%d", i), time.Millisecond)
		bs = append(bs, b)
	}
	c := e.dial(`{"policy":"round_robin",`+fastGRPCProbe+`,"overload":{"throttling":{"disabled":true},
		"endpointBreakers":[{"strategy":"slow_call_ratio","maxRT":"300ms","minRequests":3,"statWindow":"5s","retryTimeout":"1m"}]}}`, "")
	if tl := rpcs(ctx, c, 10, 2, nil, grpc.WaitForReady(true)); tl.failed > 0 {
		t.Fatal(tl)
	}
	slow := bs[2]
	slow.SetLatency(400 * time.Millisecond)
	stop := make(chan struct{})
	wait := hammerRPCs(ctx, c, 6, stop, func(error) {})
	waitFor(t, 10*time.Second, "three slow RPCs", func() bool { return slow.Requests() >= 3+10/3 })
	close(stop)
	wait()
	waitFor(t, 10*time.Second, "the slow server out of rotation", func() bool {
		before := slow.Requests()
		tl := rpcs(ctx, c, 30, 3, nil)
		return tl.failed == 0 && slow.Requests() == before && tl.by["s0"] > 0 && tl.by["s1"] > 0
	})
}

// chainPeaks counts a gRPC server's unary calls in flight for p.
func chainPeaks(p *peaks, i int) grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		defer p.enter(i)()
		return h(ctx, req)
	})
}

// The service's and the endpoints' limits hold exactly under concurrent
// RPCs (run with -race); the RPCs past them fail at once with Unavailable
// and a message naming the limit.
func TestGRPCOverloadConcurrencyLimitsHoldExactly(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	e := newGRPCEnv(t)
	pk := newPeaks(3)
	for i := range 3 {
		b := testbackend.MustGRPC(t, testbackend.WithName(fmt.Sprintf("s%d", i)), testbackend.WithLatency(5*time.Millisecond),
			testbackend.WithServerOptions(chainPeaks(pk, i)))
		e.register(b.Name(), b.Addr())
	}
	const service, perEndpoint = 5, 2
	c := e.dial(fmt.Sprintf(`{"policy":"least_request",%s,"overload":{"throttling":{"disabled":true},"limits":{"maxRequests":%d},"endpointMaxRequests":%d}}`,
		fastGRPCProbe, service, perEndpoint), "")
	if tl := rpcs(ctx, c, 10, 1, nil, grpc.WaitForReady(true)); tl.failed > 0 {
		t.Fatal(tl)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 40 {
				_, err := call(ctx, c)
				switch {
				case err == nil:
					ok.Add(1)
				case status.Code(err) == codes.Unavailable && strings.Contains(status.Convert(err).Message(), "concurrency limit"):
					refused.Add(1)
				default:
					t.Errorf("RPC failed otherwise than by a limit: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if pk.allPeak.Load() > service {
		t.Errorf("the servers worked on %d RPCs at once, the service limit is %d", pk.allPeak.Load(), service)
	}
	for i := range 3 {
		if p := pk.eachPeak[i].Load(); p > perEndpoint {
			t.Errorf("s%d worked on %d RPCs at once, the endpoint limit is %d", i, p, perEndpoint)
		}
	}
	if ok.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d served, %d refused: the load should have met the limits", ok.Load(), refused.Load())
	}
	t.Logf("640 RPCs from 16 goroutines: %d served, %d refused; peak %d in flight (limit %d), per endpoint %d/%d/%d (limit %d)",
		ok.Load(), refused.Load(), pk.allPeak.Load(), service, pk.eachPeak[0].Load(), pk.eachPeak[1].Load(), pk.eachPeak[2].Load(), perEndpoint)
}

// Busy is not broken over gRPC either: a server answering
// ResourceExhausted keeps its place in rotation, one answering Internal is
// ejected.
func TestGRPCOverloadResourceExhaustedDoesNotEject(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	e := newGRPCEnv(t)
	var bs []*testbackend.GRPC
	for i := range 3 {
		b, _ := e.serve(fmt.Sprintf("s%d", i), time.Millisecond)
		bs = append(bs, b)
	}
	c := e.dial(`{"policy":"round_robin",`+fastGRPCProbe+`,"outlierDetection":{"consecutiveFailures":2,"maxEjectedShare":1,"baseEjectionTime":"1m"}}`, "")
	if tl := rpcs(ctx, c, 10, 1, nil, grpc.WaitForReady(true)); tl.failed > 0 {
		t.Fatal(tl)
	}
	bs[0].SetCode(codes.ResourceExhausted)
	bs[1].SetCode(codes.Internal)
	rpcs(ctx, c, 30, 1, nil)
	busy, broken := bs[0].Requests(), bs[1].Requests()
	rpcs(ctx, c, 30, 1, nil)
	if bs[0].Requests()-busy < 10 {
		t.Errorf("the server answering ResourceExhausted got %d of 30 RPCs after the first 30: it was ejected", bs[0].Requests()-busy)
	}
	if bs[1].Requests() != broken {
		t.Errorf("the server answering Internal got %d more RPCs: it was not ejected", bs[1].Requests()-broken)
	}
}
