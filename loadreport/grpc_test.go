package loadreport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	v3orcaservicegrpc "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/orca"

	"github.com/smartroute/smartroute/loadreport"
)

// blockingService holds each EmptyCall until released and counts, by its
// own count, the calls and streams it is working on.
type blockingService struct {
	testpb.UnimplementedTestServiceServer
	running atomic.Int64
	release chan struct{}
}

func (s *blockingService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.running.Add(1)
	defer s.running.Add(-1)
	select {
	case <-s.release:
		return &testpb.Empty{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// FullDuplexCall echoes until the client closes its side.
func (s *blockingService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	s.running.Add(1)
	defer s.running.Add(-1)
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
}

// serveGRPC starts a gRPC server with rep's options, the health service,
// rep's ORCA service and svc, and returns a client connection to it.
func serveGRPC(t *testing.T, rep *loadreport.Reporter, svc testpb.TestServiceServer) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+serveGRPCAddr(t, rep, svc), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// serveGRPCAddr is serveGRPC without the client: it returns the address.
func serveGRPCAddr(t *testing.T, rep *loadreport.Reporter, svc testpb.TestServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(rep.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := rep.RegisterORCA(srv); err != nil {
		t.Fatal(err)
	}
	testpb.RegisterTestServiceServer(srv, svc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String()
}

// trailerReport decodes the load report of a call's trailer.
func trailerReport(t *testing.T, md metadata.MD) loadreport.Report {
	t.Helper()
	r, err := loadreport.FromMetadata(md, time.Now())
	if err != nil {
		t.Fatalf("trailer %v: %v", md, err)
	}
	return r
}

func TestGRPCReportsRequestsInFlight(t *testing.T) {
	const capacity, k = 2, 5
	rep := loadreport.New(loadreport.WithCapacity(capacity))
	svc := &blockingService{release: make(chan struct{})}
	cc := serveGRPC(t, rep, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	healthRIF := func() float64 {
		t.Helper()
		var tr metadata.MD
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
			t.Fatal(err)
		}
		r := trailerReport(t, tr)
		if !r.HasRIF() || r.Capacity != capacity {
			t.Fatalf("health trailer report %+v, want RIF and capacity %d", r, capacity)
		}
		return r.RIF
	}
	if rif := healthRIF(); rif != 0 {
		t.Fatalf("idle server: health trailer RIF %v", rif)
	}

	type answer struct {
		trailer metadata.MD
		err     error
	}
	answers := make(chan answer, k)
	for range k {
		go func() {
			var tr metadata.MD
			_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}, grpc.Trailer(&tr))
			answers <- answer{tr, err}
		}()
	}
	waitFor(t, 10*time.Second, "the calls to reach the service", func() bool { return svc.running.Load() == k })

	// A health check (a probe) sees every held call, and is not one.
	if rif := healthRIF(); rif != k {
		t.Fatalf("with %d calls held, the health trailer says RIF %v", k, rif)
	}

	// The ORCA out-of-band stream reports the same at once, and being a
	// stream that lives on does not count either.
	oob, err := v3orcaservicegrpc.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicegrpc.OrcaLoadReportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := oob.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := loadreport.FromProto(first, time.Now()); err != nil || r.RIF != k || r.Capacity != capacity {
		t.Fatalf("ORCA OOB report %+v, %v; want RIF %d, capacity %d", r, err, k, capacity)
	}
	if rif := healthRIF(); rif != k {
		t.Fatalf("with an OOB stream open, the health trailer says RIF %v", rif)
	}

	// Each call's trailer reports the calls still held besides itself;
	// the call was counted out before its trailer left.
	for i := range k {
		svc.release <- struct{}{}
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		if r := trailerReport(t, a.trailer); r.RIF != float64(k-1-i) {
			t.Fatalf("call %d: trailer RIF %v, want %d", i, r.RIF, k-1-i)
		}
		if n := rep.InFlight(); n != int64(k-1-i) {
			t.Fatalf("after call %d answered, InFlight = %d, want %d", i, n, k-1-i)
		}
	}
}

func TestGRPCStreamCountsForItsLife(t *testing.T) {
	rep := loadreport.New()
	svc := &blockingService{release: make(chan struct{})}
	cc := serveGRPC(t, rep, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := rep.InFlight(); n != 1 || svc.running.Load() != 1 {
		t.Fatalf("with a stream open, InFlight = %d (service counts %d)", n, svc.running.Load())
	}
	var tr metadata.MD
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if r := trailerReport(t, tr); r.RIF != 1 {
		t.Fatalf("health trailer RIF %v with a stream open", r.RIF)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end = %v", err)
	}
	if r := trailerReport(t, stream.Trailer()); r.RIF != 0 {
		t.Fatalf("stream trailer RIF %v, want 0", r.RIF)
	}
}

func TestGRPCExcludedMethodsAreNotCounted(t *testing.T) {
	rep := loadreport.New(loadreport.WithExcludedMethods("/grpc.testing.TestService/FullDuplexCall"))
	svc := &blockingService{release: make(chan struct{})}
	cc := serveGRPC(t, rep, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := rep.InFlight(); n != 0 {
		t.Fatalf("an excluded stream counted: InFlight = %d", n)
	}
	_ = stream.CloseSend()
	_, _ = stream.Recv()
	if r := trailerReport(t, stream.Trailer()); !r.HasRIF() {
		t.Fatal("an excluded stream's trailer has no report")
	}
}

// TestGRPCInterceptorsBesideOwnProvider is a server that reports its own
// metrics through orca.CallMetricsServerOption and adds only the
// interceptors: one trailer carries both.
func TestGRPCInterceptorsBesideOwnProvider(t *testing.T) {
	rep := loadreport.New()
	own := orca.NewServerMetricsRecorder()
	own.SetCPUUtilization(0.5)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(orca.CallMetricsServerOption(own),
		grpc.ChainUnaryInterceptor(rep.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(rep.StreamServerInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var tr metadata.MD
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if r := trailerReport(t, tr); !r.HasRIF() || r.RIF != 0 || r.CPUUtilization != 0.5 {
		t.Fatalf("trailer report %+v, want RIF 0 and the server's cpu_utilization 0.5", r)
	}
}

// captureBalancer is round robin over base's ready SubConns whose picks
// hand the ServerLoad of each finished call to loads: what a balancer,
// grpc-go's weighted_round_robin or ours, receives.
const captureBalancer = "loadreport_test_capture"

var loads = make(chan any, 16)

type capturePicker struct{ sc balancer.SubConn }

func (p capturePicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc, Done: func(info balancer.DoneInfo) {
		select {
		case loads <- info.ServerLoad:
		default:
		}
	}}, nil
}

type capturePickerBuilder struct{}

func (capturePickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	for sc := range info.ReadySCs {
		return capturePicker{sc}
	}
	return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
}

func init() {
	balancer.Register(base.NewBalancerBuilder(captureBalancer, capturePickerBuilder{}, base.Config{HealthCheck: false}))
}

// TestGRPCBalancerReceivesTheReport checks the path a client-side balancer
// takes: grpc-go parses the trailer into balancer.DoneInfo.ServerLoad (the
// orca package's parser, installed by importing loadreport) and FromProto
// reads it.
func TestGRPCBalancerReceivesTheReport(t *testing.T) {
	rep := loadreport.New(loadreport.WithCapacity(3))
	svc := &blockingService{release: make(chan struct{})}
	addr := serveGRPCAddr(t, rep, svc)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+captureBalancer+`":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(loads) > 0 {
		<-loads
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	var sl any
	select {
	case sl = <-loads:
	case <-ctx.Done():
		t.Fatal("the balancer's Done was not called")
	}
	p, ok := sl.(*v3orcapb.OrcaLoadReport)
	if !ok {
		t.Fatalf("DoneInfo.ServerLoad is %T, want *OrcaLoadReport", sl)
	}
	if r, err := loadreport.FromProto(p, time.Now()); err != nil || !r.HasRIF() || r.RIF != 0 || r.Capacity != 3 {
		t.Fatalf("FromProto(ServerLoad) = %+v, %v", r, err)
	}
}
