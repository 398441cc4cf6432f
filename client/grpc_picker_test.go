package client

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	_ "google.golang.org/grpc/interop/grpc_testing" // registers TestService's descriptors: a streaming method
	grpcresolver "google.golang.org/grpc/resolver"
)

// grpcTestPicker returns a picker over n endpoints whose children are all
// READY, on a fake clock.
func grpcTestPicker(t *testing.T, n int) (*grpcPicker, *table, *fakeClock) {
	t.Helper()
	tb, clk := testTable(t, addrs(n), WithoutProbe(), func(c *config) { c.requireConnected = true })
	children := make([]endpointsharding.ChildState, n)
	for i, ep := range tb.snapshot().all {
		children[i] = endpointsharding.ChildState{
			Endpoint: grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: ep.addr}}},
			State:    balancer.State{ConnectivityState: connectivity.Ready, Picker: readyPicker{}},
		}
	}
	if !tb.setChildren(children) {
		t.Fatal("no child READY")
	}
	return &grpcPicker{t: tb}, tb, clk
}

// Pick and Done allocate nothing, timed or not, unary or streaming, when
// the RPC's context carries no span or one that does not record.
func TestGRPCPickDoesNotAllocate(t *testing.T) {
	p, tb, clk := grpcTestPicker(t, 3)
	notRecording := trace.ContextWithSpanContext(context.Background(), trace.SpanContext{})
	for _, c := range []struct {
		name   string
		method string
		ctx    context.Context
	}{
		{"unary", "/grpc.testing.TestService/EmptyCall", context.Background()},
		{"unary/span not recording", "/grpc.testing.TestService/EmptyCall", notRecording},
		{"stream", "/grpc.testing.TestService/FullDuplexCall", context.Background()},
	} {
		info := balancer.PickInfo{FullMethodName: c.method, Ctx: c.ctx}
		var picks int
		allocs := testing.AllocsPerRun(1000, func() {
			if picks++; picks%4 == 0 {
				clk.advance(2 * coarseTick) // the next pick is timed
			}
			res, err := p.Pick(info)
			if err != nil {
				t.Fatal(err)
			}
			res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per Pick and Done, want 0", c.name, allocs)
		}
		var requests uint64
		for _, ep := range tb.snapshot().all {
			if w := ep.hot.waiting.Load(); w != 0 {
				t.Errorf("%s: %s has %d RPCs waiting after every Done", c.name, ep.addr, w)
			}
			requests += ep.requests.Load()
		}
		if requests == 0 && c.name != "stream" {
			t.Errorf("%s: Done recorded no request", c.name)
		}
	}
}

// The picker's Done runs the child's Done after its own, and a pick that
// gRPC did not use (Done without bytes or error) records no request.
func TestGRPCPickChainsTheChildsDone(t *testing.T) {
	p, tb, _ := grpcTestPicker(t, 1)
	ep := tb.snapshot().all[0]
	var order []string
	ep.child.Store(&grpcChild{state: connectivity.Ready, picker: pickerFunc(func(balancer.PickInfo) (balancer.PickResult, error) {
		return balancer.PickResult{Done: func(balancer.DoneInfo) {
			order = append(order, "child")
			if ep.hot.waiting.Load() != 0 {
				order = append(order, "before the table's")
			}
		}}, nil
	})})
	info := balancer.PickInfo{FullMethodName: "/grpc.testing.TestService/EmptyCall", Ctx: context.Background()}
	res, err := p.Pick(info)
	if err != nil {
		t.Fatal(err)
	}
	res.Done(balancer.DoneInfo{})
	if len(order) != 1 || ep.requests.Load() != 0 {
		t.Errorf("unused pick: child Done %v, %d requests recorded; want [child], 0", order, ep.requests.Load())
	}
	res, err = p.Pick(info)
	if err != nil {
		t.Fatal(err)
	}
	res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
	if len(order) != 2 || ep.requests.Load() != 1 {
		t.Errorf("child Done %v, %d requests recorded; want [child child], 1", order, ep.requests.Load())
	}
}

type pickerFunc func(balancer.PickInfo) (balancer.PickResult, error)

func (f pickerFunc) Pick(info balancer.PickInfo) (balancer.PickResult, error) { return f(info) }

// The streaming verdicts stay right however the methods alternate, for
// methods seen for the first time, and past the bound on the names kept.
func TestStreamingVerdicts(t *testing.T) {
	tb, _ := testTable(t, addrs(1), WithoutProbe())
	want := map[string]bool{
		"/grpc.testing.TestService/EmptyCall":           false,
		"/grpc.testing.TestService/UnaryCall":           false,
		"/grpc.testing.TestService/FullDuplexCall":      true,
		"/grpc.testing.TestService/StreamingOutputCall": true,
		"/grpc.testing.TestService/StreamingInputCall":  true,
		"/grpc.testing.TestService/HalfDuplexCall":      true,
		"/grpc.testing.TestService/NoSuchCall":          false,
		"/no.such.Service/FullDuplexCall":               false,
		"/a/b":                                          false,
		"":                                              false,
	}
	for range 3 {
		for m, stream := range want {
			if got := tb.streaming(m); got != stream {
				t.Errorf("streaming(%q) = %v, want %v", m, got, stream)
			}
		}
	}
	for i := range maxKnownMethods + 100 {
		if tb.streaming(fmt.Sprintf("/proxied.Service%d/FullDuplexCall", i)) {
			t.Fatalf("an unregistered service's method streams")
		}
	}
	if n := tb.methods.nknown.Load(); n > maxKnownMethods {
		t.Errorf("%d method names kept, want at most %d", n, maxKnownMethods)
	}
	for m, stream := range want {
		if got := tb.streaming(m); got != stream {
			t.Errorf("after many names, streaming(%q) = %v, want %v", m, got, stream)
		}
	}
}

// BenchmarkGRPCPick measures the gRPC picker's Pick and Done over three
// READY endpoints on the real clock, without gRPC around it, for a unary
// and a streaming method. least_latency's pick varies from run to run with
// what it learnt (as in the benchmarks package's
// BenchmarkGRPCPickerSerial); round_robin's hardly, which leaves the
// picker's own cost to compare. It must report 0 allocs/op.
//
//	go test -run '^$' -bench BenchmarkGRPCPick -benchmem ./client
func BenchmarkGRPCPick(b *testing.B) {
	for _, policy := range []Policy{LeastLatency, RoundRobin} {
		b.Run(string(policy), func(b *testing.B) { benchGRPCPick(b, policy) })
	}
}

func benchGRPCPick(b *testing.B, policy Policy) {
	tb, _ := testTable(b, addrs(3), WithoutProbe(), WithPolicy(policy), func(c *config) { c.requireConnected = true })
	runRealClock(b, tb)
	var children []endpointsharding.ChildState
	now := tb.cfg.now()
	for i, ep := range tb.snapshot().all {
		children = append(children, endpointsharding.ChildState{
			Endpoint: grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: ep.addr}}},
			State:    balancer.State{ConnectivityState: connectivity.Ready, Picker: readyPicker{}},
		})
		tb.observe(ep, outcomeSuccess, time.Duration(1+i)*time.Millisecond, now)
	}
	tb.setChildren(children)
	tb.refreshNow(tb.clock.Now())
	p := &grpcPicker{t: tb}
	for _, method := range []string{"/grpc.testing.TestService/EmptyCall", "/grpc.testing.TestService/FullDuplexCall"} {
		b.Run(method[strings.LastIndexByte(method, '/')+1:], func(b *testing.B) {
			info := balancer.PickInfo{FullMethodName: method, Ctx: context.Background()}
			b.ReportAllocs()
			for b.Loop() {
				res, err := p.Pick(info)
				if err != nil {
					b.Fatal(err)
				}
				res.Done(balancer.DoneInfo{BytesSent: true, BytesReceived: true})
			}
		})
	}
}
