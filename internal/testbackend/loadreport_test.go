package testbackend

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/smartroute/smartroute/loadreport"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHTTPLoadReportCountsQueuedRequests(t *testing.T) {
	b := MustHTTP(t, WithLoadReport(), WithCapacity(1), WithLatency(time.Hour))
	if MustHTTP(t).LoadReporter() != nil {
		t.Fatal("a backend without WithLoadReport has a Reporter")
	}
	c := plainClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL(), nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	waitUntil(t, "3 requests at the backend", func() bool { return b.InFlight() == 3 })
	// One works, two queue for the single worker: all three are load.
	if r := b.LoadReporter().Snapshot(); r.RIF != 3 || r.Capacity != 1 {
		t.Fatalf("with 3 requests held and capacity 1: %+v", r)
	}
	cancel()
	wg.Wait()
	waitUntil(t, "the held requests to leave", func() bool { return b.LoadReporter().InFlight() == 0 })

	b.SetLatency(0)
	resp, err := c.Get(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r, err := loadreport.FromHeader(resp.Header, time.Now())
	if err != nil || !r.HasRIF() || r.RIF != 0 || r.Capacity != 1 {
		t.Fatalf("answer's report %+v, %v", r, err)
	}
}

func TestGRPCLoadReportInTrailersAndOOB(t *testing.T) {
	b := MustGRPC(t, WithLoadReport(), WithCapacity(1), WithLatency(time.Hour))
	cc := dialGRPC(t, b.Addr(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hold, release := context.WithCancel(ctx)
	defer release()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _, _ = testpb.NewTestServiceClient(cc).EmptyCall(hold, &testpb.Empty{}) })
	}
	waitUntil(t, "3 calls at the backend", func() bool { return b.InFlight() == 3 })

	var tr metadata.MD
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if r, err := loadreport.FromMetadata(tr, time.Now()); err != nil || r.RIF != 3 || r.Capacity != 1 {
		t.Fatalf("health trailer report %+v, %v; want RIF 3, capacity 1", r, err)
	}
	stream, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := loadreport.FromProto(p, time.Now()); err != nil || r.RIF != 3 {
		t.Fatalf("OOB report %+v, %v", r, err)
	}
	release()
	wg.Wait()
	waitUntil(t, "the held calls to leave", func() bool { return b.LoadReporter().InFlight() == 0 })

	b.SetLatency(0)
	tr = nil
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if r, err := loadreport.FromMetadata(tr, time.Now()); err != nil || r.RIF != 0 {
		t.Fatalf("call trailer report %+v, %v", r, err)
	}
	if b.Requests() != 4 {
		t.Fatalf("Requests = %d: health checks and the ORCA stream must not count", b.Requests())
	}
}
