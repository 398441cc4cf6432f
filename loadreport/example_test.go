package loadreport_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/smartroute/smartroute/loadreport"
)

// An HTTP server reports its requests in flight and its capacity on every
// response; its health endpoint reports without being counted.
func ExampleReporter_Middleware() {
	rep := loadreport.New(loadreport.WithCapacity(8))
	mux := http.NewServeMux()
	mux.Handle("/", rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello\n")
	})))
	mux.Handle("/healthz", rep.ReportOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Header.Get(loadreport.HeaderName))
	// Output:
	// TEXT named_metrics.rif=0,named_metrics.capacity=8
}

// A client reads the report of a response: RIF needs no allocation.
func ExampleParseHeader() {
	r, err := loadreport.ParseHeader("TEXT named_metrics.rif=3, named_metrics.capacity=8, cpu_utilization=0.42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.HasRIF(), r.RIF, r.Capacity, r.CPUUtilization)

	_, err = loadreport.ParseHeader("TEXT named_metrics.rif=-1")
	fmt.Println(err)
	// Output:
	// true 3 8 0.42
	// loadreport: malformed load report: TEXT: metric "named_metrics.rif": value -1 is negative
}

// A gRPC server sends a load report in the trailer of every call, health
// checks included, and on the ORCA out-of-band stream.
func ExampleReporter_ServerOptions() {
	rep := loadreport.New(loadreport.WithCapacity(4))
	srv := grpc.NewServer(rep.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := rep.RegisterORCA(srv); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var trailer metadata.MD
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer)); err != nil {
		log.Fatal(err)
	}
	r, err := loadreport.FromMetadata(trailer, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rif", r.RIF, "capacity", r.Capacity)
	// Output:
	// rif 0 capacity 4
}
