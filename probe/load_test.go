package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/loadreport"
)

// loadedHTTP serves, with a Reporter of the given capacity, /work (counted,
// held until the test ends) and /healthz (reported on, not counted), and
// returns the address and a function that puts k requests in flight.
func loadedHTTP(t *testing.T, capacity int) (addr string, hold func(k int)) {
	t.Helper()
	rep := loadreport.New(loadreport.WithCapacity(capacity))
	var running atomic.Int64
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/work", rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})))
	mux.Handle("/healthz", rep.ReportOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tr := &http.Transport{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		tr.CloseIdleConnections()
		_ = srv.Close()
	})
	addr = ln.Addr().String()
	return addr, func(k int) {
		t.Helper()
		want := running.Load() + int64(k)
		for range k {
			wg.Go(func() {
				if resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/work"); err == nil {
					resp.Body.Close()
				}
			})
		}
		waitFor(t, 10*time.Second, "the requests to be held", func() bool { return running.Load() == want })
	}
}

func TestHTTPCheckLoadReadsTheReport(t *testing.T) {
	addr, hold := loadedHTTP(t, 8)
	hold(3)
	before := time.Now()
	res, err := HTTP{Path: "/healthz"}.CheckLoad(ctx(t), addr)
	after := time.Now()
	if err != nil || res.LoadErr != nil || res.RTT <= 0 {
		t.Fatalf("CheckLoad = %+v, %v", res, err)
	}
	if !res.Load.HasRIF() || res.Load.RIF != 3 || res.Load.Capacity != 8 {
		t.Fatalf("with 3 requests held: load %+v, want RIF 3 capacity 8", res.Load)
	}
	if res.Load.Received.Before(before) || res.Load.Received.After(after) {
		t.Fatalf("Received %v outside the check [%v, %v]", res.Load.Received, before, after)
	}
}

func TestHTTPCheckLoadWithoutOrWithBadReports(t *testing.T) {
	var header atomic.Value
	header.Store("")
	b := testbackend.MustHTTP(t, testbackend.WithHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if v := header.Load().(string); v != "" {
			w.Header().Set(loadreport.HeaderName, v)
		}
		w.WriteHeader(http.StatusOK)
	})))

	res, err := HTTP{}.CheckLoad(ctx(t), b.Addr())
	if err != nil || !res.Load.IsZero() || res.LoadErr != nil {
		t.Fatalf("no report: %+v, %v; want a zero Load and no error", res, err)
	}

	header.Store("TEXT named_metrics.rif=-2")
	res, err = HTTP{}.CheckLoad(ctx(t), b.Addr())
	if err != nil {
		t.Fatalf("a malformed report failed the check: %v", err)
	}
	if !errors.Is(res.LoadErr, loadreport.ErrMalformed) || !res.Load.IsZero() {
		t.Fatalf("malformed report: %+v, want LoadErr wrapping ErrMalformed", res)
	}

}

// An overloaded server answering 503 still says how loaded it is.
func TestHTTPCheckLoadOnAnErrorStatus(t *testing.T) {
	rep := loadreport.New(loadreport.WithCapacity(1))
	b := testbackend.MustHTTP(t, testbackend.WithHandler(rep.ReportOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))))
	res, err := HTTP{}.CheckLoad(ctx(t), b.Addr())
	if !errors.Is(err, ErrUnexpectedStatus) {
		t.Fatalf("503 = %v, want ErrUnexpectedStatus", err)
	}
	if !res.Load.HasRIF() || res.Load.Capacity != 1 {
		t.Fatalf("the 503's report was lost: %+v", res)
	}
}

func TestGRPCHealthCheckLoadFromTheTrailer(t *testing.T) {
	b := testbackend.MustGRPC(t, testbackend.WithLoadReport(), testbackend.WithCapacity(2), testbackend.WithLatency(time.Hour))
	holdGRPC(t, b.Addr(), 3, func() bool { return b.InFlight() == 3 })
	res, err := GRPCHealth{}.CheckLoad(ctx(t), b.Addr())
	if err != nil || res.LoadErr != nil {
		t.Fatalf("CheckLoad = %+v, %v", res, err)
	}
	if res.Load.RIF != 3 || res.Load.Capacity != 2 {
		t.Fatalf("with 3 calls held: load %+v, want RIF 3 capacity 2", res.Load)
	}

	// NOT_SERVING still fails the check and still reports.
	b.SetServing("", false)
	res, err = GRPCHealth{}.CheckLoad(ctx(t), b.Addr())
	if !errors.Is(err, ErrNotServing) || res.Load.RIF != 3 {
		t.Fatalf("NOT_SERVING: %+v, %v", res, err)
	}
}

// holdGRPC puts k EmptyCalls in flight on addr until the test ends and
// waits for held to hold.
func holdGRPC(t *testing.T, addr string, k int, held func() bool) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cc.Close()
	})
	for range k {
		wg.Go(func() { _, _ = testpb.NewTestServiceClient(cc).EmptyCall(c, &testpb.Empty{}) })
	}
	waitFor(t, 10*time.Second, "the calls to be held", held)
}

// heldService holds every EmptyCall until its context ends.
type heldService struct {
	testpb.UnimplementedTestServiceServer
	running atomic.Int64
}

func (s *heldService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.running.Add(1)
	defer s.running.Add(-1)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestGRPCHealthCheckLoadFromOOB(t *testing.T) {
	// A server that reports only out of band: it counts calls, but sends
	// no per-call reports (no orca.CallMetricsServerOption).
	rep := loadreport.New(loadreport.WithCapacity(4))
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(rep.UnaryServerInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := rep.RegisterORCA(srv); err != nil {
		t.Fatal(err)
	}
	svc := &heldService{}
	testpb.RegisterTestServiceServer(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	addr := ln.Addr().String()
	holdGRPC(t, addr, 2, func() bool { return svc.running.Load() == 2 })

	res, err := GRPCHealth{}.CheckLoad(ctx(t), addr)
	if err != nil || !res.Load.IsZero() || res.LoadErr != nil {
		t.Fatalf("without OOB: %+v, %v; want no report", res, err)
	}
	res, err = GRPCHealth{OOB: true}.CheckLoad(ctx(t), addr)
	if err != nil || res.LoadErr != nil {
		t.Fatalf("with OOB: %+v, %v", res, err)
	}
	if res.Load.RIF != 2 || res.Load.Capacity != 4 || res.Load.Received.IsZero() {
		t.Fatalf("OOB load %+v, want RIF 2 capacity 4", res.Load)
	}
}

func TestGRPCHealthOOBAgainstAServerWithoutORCA(t *testing.T) {
	b := testbackend.MustGRPC(t)
	res, err := GRPCHealth{OOB: true}.CheckLoad(ctx(t), b.Addr())
	if err != nil {
		t.Fatalf("a server without ORCA failed the check: %v", err)
	}
	if status.Code(res.LoadErr) != codes.Unimplemented || !res.Load.IsZero() {
		t.Fatalf("LoadErr = %v, want Unimplemented", res.LoadErr)
	}
}

func TestProberKeepsTheLatestLoad(t *testing.T) {
	var header atomic.Value
	header.Store("TEXT named_metrics.rif=5")
	b := testbackend.MustHTTP(t, testbackend.WithHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if v := header.Load().(string); v != "" {
			w.Header().Set(loadreport.HeaderName, v)
		}
	})))
	p := newProber(t, HTTP{}, fast()...)
	rec := record(p)
	p.SetAddrs([]string{b.Addr()})

	st := waitChecks(t, p, b.Addr(), 1)
	if st.Load.RIF != 5 || st.LoadErr != nil {
		t.Fatalf("status %+v, want RIF 5", st)
	}
	first := st.Load.Received
	if first.After(st.LastCheck) || st.LastCheck.Sub(first) > time.Second {
		t.Fatalf("Received %v, LastCheck %v", first, st.LastCheck)
	}

	// Answers without a report keep the last one, which ages.
	header.Store("")
	st = waitChecks(t, p, b.Addr(), st.Checks+2)
	if st.Load.RIF != 5 || !st.Load.Received.Equal(first) || st.LoadErr != nil {
		t.Fatalf("after answers without a report: %+v", st)
	}

	// A malformed report is an error beside a healthy verdict.
	header.Store("TEXT rif=1")
	st = waitChecks(t, p, b.Addr(), st.Checks+2)
	if !errors.Is(st.LoadErr, loadreport.ErrMalformed) || st.Health != Healthy || st.Load.RIF != 5 {
		t.Fatalf("after a malformed report: %+v", st)
	}

	header.Store("TEXT named_metrics.rif=1")
	st = waitChecks(t, p, b.Addr(), st.Checks+2)
	if st.Load.RIF != 1 || st.LoadErr != nil || !st.Load.Received.After(first) {
		t.Fatalf("after a new report: %+v", st)
	}
	// Subscribers hear the load with every check.
	waitFor(t, 5*time.Second, "an event carrying the new load", func() bool {
		evs := rec.of(b.Addr())
		return len(evs) > 0 && evs[len(evs)-1].Load.RIF == 1
	})
}

func TestPlainCheckersStillWork(t *testing.T) {
	b := testbackend.MustHTTP(t)
	// A Checker that is not a LoadChecker: the prober calls Check.
	plain := CheckerFunc(func(ctx context.Context, addr string) (time.Duration, error) {
		return HTTP{}.Check(ctx, addr)
	})
	p := newProber(t, plain, fast()...)
	p.SetAddrs([]string{b.Addr()})
	st := waitChecks(t, p, b.Addr(), 2)
	if st.Health != Healthy || !st.Load.IsZero() || st.LoadErr != nil {
		t.Fatalf("status %+v", st)
	}
}
