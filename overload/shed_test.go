package overload_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/overload"
)

func TestShedderRefusesPastItsLimitWith503AndRetryAfter(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := overload.NewShedder(2, overload.WithShedRegisterer(reg), overload.WithShedLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := testbackend.MustHTTP(t, testbackend.WithLatency(time.Minute), testbackend.WithMiddleware(s.Middleware))
	hc := &http.Client{Transport: loopbackTransport(t)}

	// Two slow requests take the two slots.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL(), nil)
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	waitFor(t, "two requests in flight", func() bool { return s.InFlight() == 2 })
	resp, err := hc.Get(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d, Retry-After %q; want 503 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if b.Requests() != 2 {
		t.Fatalf("backend saw %d requests; want 2 (the shed one never reached it)", b.Requests())
	}
	cancel()
	wg.Wait()
	waitFor(t, "the slots free", func() bool { return s.InFlight() == 0 })
	b.SetLatency(0)
	if code, _, err := get(hc, b.URL()); err != nil || code != 200 {
		t.Fatalf("after the load went: %d %v", code, err)
	}
	if v := metricValue(t, reg, "smartroute_overload_server_shed_total", map[string]string{"server": "default"}); v != 1 {
		t.Fatalf("shed metric %v; want 1", v)
	}
}

func TestShedderInterceptorsRefuseWithResourceExhausted(t *testing.T) {
	s, err := overload.NewShedder(1, overload.WithRetryAfter(250*time.Millisecond), overload.WithShedLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	b := testbackend.MustGRPC(t, testbackend.WithLatency(time.Minute),
		testbackend.WithServerOptions(grpc.UnaryInterceptor(s.UnaryServerInterceptor()), grpc.StreamInterceptor(s.StreamServerInterceptor())))
	tc := dial(t, b.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, err := tc.EmptyCall(ctx, &testpb.Empty{})
		held <- err
	}()
	waitFor(t, "one call in flight", func() bool { return s.InFlight() == 1 })
	var trailer metadata.MD
	_, err = tc.EmptyCall(context.Background(), &testpb.Empty{}, grpc.Trailer(&trailer))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "shedding load: 1 requests in flight") {
		t.Fatalf("second call: %v; want ResourceExhausted, shedding load", err)
	}
	if got := trailer.Get("grpc-retry-pushback-ms"); len(got) != 1 || got[0] != "250" {
		t.Fatalf("pushback trailer %v; want [250]", got)
	}
	// Streams are shed too.
	stream, err := tc.FullDuplexCall(context.Background())
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream past the limit: %v; want ResourceExhausted", err)
	}
	cancel()
	<-held
	waitFor(t, "the slot free", func() bool { return s.InFlight() == 0 })
}

func TestNewShedderRefusesBadLimits(t *testing.T) {
	if _, err := overload.NewShedder(0); err == nil || !strings.Contains(err.Error(), "max in flight 0 must be at least 1") {
		t.Fatalf("NewShedder(0): %v", err)
	}
	if _, err := overload.NewShedder(1, overload.WithRetryAfter(-time.Second)); err == nil {
		t.Fatal("negative Retry-After accepted")
	}
}
