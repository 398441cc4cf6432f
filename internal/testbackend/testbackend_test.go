package testbackend

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/certgen"
)

// waitLimit bounds every wait of these tests: generous, for a loaded 2-core
// machine with the race detector; when all is right they end in
// milliseconds.
const waitLimit = 30 * time.Second

// get fetches url with a fresh connection and returns status, X-Backend,
// body and the elapsed time.
func get(t *testing.T, c *http.Client, url string) (int, string, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(HeaderBackend), string(body), time.Since(start)
}

// fastest fetches url n times and returns the shortest time taken, failing
// t unless every answer had status want. An upper bound on one request's
// time fails whenever a loaded machine stalls that request; the fastest of
// a few is as slow as an injected delay only if every one of them was
// delayed, which is what such a check means to catch.
func fastest(t *testing.T, c *http.Client, url string, want, n int) time.Duration {
	t.Helper()
	var best time.Duration
	for i := range n {
		code, _, _, took := get(t, c, url)
		if code != want {
			t.Fatalf("GET %s: status %d, want %d", url, code, want)
		}
		if i == 0 || took < best {
			best = took
		}
	}
	return best
}

func plainClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitLimit}
}

func TestHTTPNameLatencyStatusAndCounter(t *testing.T) {
	b := MustHTTP(t, WithName("b1"), WithLatency(30*time.Millisecond))
	c := plainClient(t)
	code, hdr, body, took := get(t, c, b.URL()+"/x")
	if code != 200 || hdr != "b1" || body != "b1\n" {
		t.Fatalf("got %d %q %q, want 200 b1 b1\\n", code, hdr, body)
	}
	if took < 30*time.Millisecond {
		t.Fatalf("answered in %v, latency is 30ms", took)
	}
	b.SetLatency(0)
	b.SetStatus(http.StatusServiceUnavailable)
	if code, hdr, _, _ := get(t, c, b.URL()); code != 503 || hdr != "b1" {
		t.Fatalf("after SetStatus(503): %d %q", code, hdr)
	}
	b.SetStatus(0)
	if code, _, _, _ := get(t, c, b.URL()); code != 200 {
		t.Fatalf("after SetStatus(0): %d", code)
	}
	if n := b.Requests(); n != 3 {
		t.Fatalf("Requests = %d, want 3", n)
	}
}

func TestHTTPHeavyTail(t *testing.T) {
	b := MustHTTP(t, WithLatency(10*time.Millisecond), WithHeavyTail(1, 5))
	c := plainClient(t)
	if _, _, _, took := get(t, c, b.URL()); took < 50*time.Millisecond {
		t.Fatalf("tail request took %v, want >= 50ms", took)
	}
	b.SetHeavyTail(0, 0)
	if took := fastest(t, c, b.URL(), 200, 3); took >= 50*time.Millisecond {
		t.Fatalf("with the tail off the fastest of 3 requests took %v", took)
	}
}

func TestHTTPCapacityQueues(t *testing.T) {
	const lat = 40 * time.Millisecond
	b := MustHTTP(t, WithLatency(lat), WithCapacity(1))
	c := plainClient(t)
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, err := c.Get(b.URL())
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if took := time.Since(start); took < 3*lat {
		t.Fatalf("3 requests through 1 worker took %v, want >= %v", took, 3*lat)
	}
}

func TestHTTPStopRestartSameAddress(t *testing.T) {
	b := MustHTTP(t, WithName("r"))
	c := plainClient(t)
	addr := b.Addr()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if b.Running() {
		t.Fatal("Running after Stop")
	}
	if _, err := c.Get(b.URL()); err == nil {
		t.Fatal("GET succeeded on a stopped backend")
	}
	if err := b.Stop(); !errors.Is(err, ErrStopped) {
		t.Fatalf("second Stop = %v, want ErrStopped", err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if b.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, b.Addr())
	}
	if code, hdr, _, _ := get(t, c, b.URL()); code != 200 || hdr != "r" {
		t.Fatalf("after Restart: %d %q", code, hdr)
	}
}

func TestHTTPStopInterruptsSlowRequests(t *testing.T) {
	b := MustHTTP(t, WithLatency(time.Hour))
	c := plainClient(t)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Get(b.URL())
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	deadline := time.Now().Add(waitLimit)
	for b.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { _ = b.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Stop did not interrupt a request waiting its latency")
	}
	if err := <-errc; err == nil {
		t.Fatal("request on a stopped backend succeeded")
	}
}

func TestHTTPS(t *testing.T) {
	ca := certgen.NewCA(t, "ca")
	leaf := ca.Server(t, []string{"127.0.0.1"})
	b := MustHTTP(t, WithName("s"), WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}}))
	if !strings.HasPrefix(b.URL(), "https://") {
		t.Fatalf("URL = %s", b.URL())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certgen.Pool(ca)}, DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: waitLimit}
	if code, hdr, _, _ := get(t, c, b.URL()); code != 200 || hdr != "s" {
		t.Fatalf("https: %d %q", code, hdr)
	}
	other := certgen.NewCA(t, "other")
	tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certgen.Pool(other)}, DisableKeepAlives: true}
	if _, err := (&http.Client{Transport: tr2}).Get(b.URL()); err == nil {
		t.Fatal("https verified against the wrong CA")
	}
}

func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCBackend(t *testing.T) {
	b := MustGRPC(t, WithName("g1"), WithLatency(20*time.Millisecond))
	cc := dialGRPC(t, b.Addr(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()

	var hdr metadata.MD
	start := time.Now()
	resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHostname() != "g1" || strings.Join(hdr.Get("x-backend"), ",") != "g1" {
		t.Fatalf("hostname %q, x-backend %v", resp.GetHostname(), hdr.Get("x-backend"))
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Fatalf("UnaryCall took %v, latency is 20ms", took)
	}

	hc := healthpb.NewHealthClient(cc)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if st := check(); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %s", st)
	}
	b.SetServing("", false)
	if st := check(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SetServing(false) = %s", st)
	}

	b.SetCode(codes.Unavailable)
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("EmptyCall with SetCode(Unavailable) = %v", err)
	}
	if n := b.Requests(); n != 2 {
		t.Fatalf("Requests = %d, want 2 (health checks not counted)", n)
	}

	addr := b.Addr()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("health check succeeded on a stopped backend")
	}
	if err := b.Restart(); err != nil || b.Addr() != addr {
		t.Fatalf("Restart: %v, addr %s (was %s)", err, b.Addr(), addr)
	}
	b.SetServing("", true)
	r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after Restart: %v %v", r, err)
	}
}

func TestGRPCTLS(t *testing.T) {
	ca := certgen.NewCA(t, "ca")
	leaf := ca.Server(t, []string{"127.0.0.1"})
	b := MustGRPC(t, WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}}))
	cc := dialGRPC(t, b.Addr(), credentials.NewTLS(&tls.Config{RootCAs: certgen.Pool(ca)}))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
}

func TestBlackholeAcceptsAndNeverAnswers(t *testing.T) {
	b := MustBlackhole(t)
	c, err := net.DialTimeout("tcp", b.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var buf [1]byte
	_, err = c.Read(buf[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from blackhole = %v, want a timeout", err)
	}
	if b.Accepted() != 1 {
		t.Fatalf("Accepted = %d", b.Accepted())
	}
}

func TestProxyFaults(t *testing.T) {
	b := MustHTTP(t, WithName("up"))
	p := MustProxy(t, b.Addr())
	c := plainClient(t)
	url := "http://" + p.Addr()
	if _, hdr, _, _ := get(t, c, url); hdr != "up" {
		t.Fatalf("through proxy: X-Backend %q", hdr)
	}

	if err := p.AddLatency(50*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, _, took := get(t, c, url); took < 50*time.Millisecond {
		t.Fatalf("with 50ms latency a request took %v", took)
	}
	if err := p.AddLatency(60*time.Millisecond, 0); err != nil { // replaces, does not stack or fail
		t.Fatal(err)
	}

	if err := p.Blackhole(); err != nil {
		t.Fatal(err)
	}
	short := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 200 * time.Millisecond}
	if _, err := short.Get(url); err == nil {
		t.Fatal("request through a blackholed proxy succeeded")
	}

	p.RemoveToxics()
	if took := fastest(t, c, url, 200, 3); took >= 50*time.Millisecond {
		t.Fatalf("after RemoveToxics the fastest of 3 requests took %v", took)
	}

	if err := p.Slicer(1, 0, 100*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if _, hdr, _, _ := get(t, c, url); hdr != "up" {
		t.Fatalf("sliced answer: X-Backend %q", hdr)
	}
	p.RemoveToxics()

	if err := p.ResetPeer(0); err != nil {
		t.Fatal(err)
	}
	if _, err := short.Get(url); err == nil {
		t.Fatal("request through reset_peer succeeded")
	}
	p.RemoveToxics()

	addr := p.Addr()
	p.Disable()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("connect to a disabled proxy succeeded")
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != addr {
		t.Fatalf("address changed on Enable: %s -> %s", addr, p.Addr())
	}
	if code, _, _, _ := get(t, c, url); code != 200 {
		t.Fatalf("after Enable: %d", code)
	}
}

func TestHTTPHandlerAndHostEcho(t *testing.T) {
	b := MustHTTP(t, WithName("h"), WithHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})))
	c := plainClient(t)
	req, _ := http.NewRequest(http.MethodGet, b.URL()+"/healthz", nil)
	req.Host = "svc.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get(HeaderRequestHost) != "svc.example" || resp.Header.Get(HeaderBackend) != "h" {
		t.Fatalf("got %d %q host=%q backend=%q", resp.StatusCode, body, resp.Header.Get(HeaderRequestHost), resp.Header.Get(HeaderBackend))
	}
	if code, _, _, _ := get(t, c, b.URL()+"/other"); code != 404 {
		t.Fatalf("handler not used: %d", code)
	}
	b.SetStatus(503)
	if code, _, _, _ := get(t, c, b.URL()+"/healthz"); code != 503 {
		t.Fatalf("status override did not win over the handler: %d", code)
	}
}

func TestGRPCGracefulStopLetsCallsFinish(t *testing.T) {
	b := MustGRPC(t, WithLatency(100*time.Millisecond))
	cc := dialGRPC(t, b.Addr(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
		errc <- err
	}()
	waitInFlight := time.Now().Add(waitLimit)
	for b.InFlight() == 0 {
		if time.Now().After(waitInFlight) {
			t.Fatal("call never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.GracefulStop(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("call in flight during GracefulStop = %v, want success", err)
	}
	if b.Running() {
		t.Fatal("Running after GracefulStop")
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}
