package benchmarks

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// BenchmarkGRPCStartup measures a ClientConn's start-up over n endpoints
// (one gRPC server listening on n loopback ports): from dial to every
// subchannel connected and a first RPC answered, for the smartroute
// balancer and grpc-go's round_robin, which share endpointsharding.
// ms-startup per n shows how it grows.
//
//	go test -run '^$' -bench BenchmarkGRPCStartup -benchtime 1x ./benchmarks
func BenchmarkGRPCStartup(b *testing.B) {
	registerGRPC()
	for _, n := range []int{250, 500, 1000} {
		srv := grpc.NewServer()
		testpb.RegisterTestServiceServer(srv, &testpb.UnimplementedTestServiceServer{})
		var accepted atomic.Int64
		addrs := make([]string, n)
		for i := range addrs {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addrs[i] = ln.Addr().String()
			go func() { _ = srv.Serve(countingListener{ln, &accepted}) }()
		}
		for _, ct := range grpcContenders()[:2] {
			b.Run(fmt.Sprintf("n=%d/lb=%s", n, ct.name), func(b *testing.B) {
				var total time.Duration
				for b.Loop() {
					start := time.Now()
					base := accepted.Load()
					conn := dialGRPC(b, addrs, ct.lb, ct.config)
					conn.Connect()
					deadline := time.Now().Add(time.Minute)
					for accepted.Load()-base < int64(n) {
						if time.Now().After(deadline) {
							b.Fatalf("%d of %d connected after a minute", accepted.Load()-base, n)
						}
						time.Sleep(time.Millisecond)
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					_, err := testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true))
					cancel()
					if err == nil {
						b.Fatal("EmptyCall answered by a server that implements nothing")
					}
					total += time.Since(start)
					conn.Close()
				}
				b.ReportMetric(ms(total)/float64(b.N), "ms-startup")
			})
		}
		srv.Stop()
	}
}
