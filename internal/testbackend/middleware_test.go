package testbackend

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

func TestHTTPMiddlewareSeesRequestsBeforeTheBackend(t *testing.T) {
	var seen atomic.Int64
	b := MustHTTP(t, WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			if r.URL.Path == "/refuse" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	c := plainClient(t)
	if code, _, _, _ := get(t, c, b.URL()+"/refuse"); code != http.StatusTeapot {
		t.Fatalf("refused request: status %d", code)
	}
	if code, _, _, _ := get(t, c, b.URL()+"/"); code != http.StatusOK {
		t.Fatalf("passed request: status %d", code)
	}
	if seen.Load() != 2 || b.Requests() != 1 {
		t.Fatalf("middleware saw %d, backend counted %d; want 2 and 1", seen.Load(), b.Requests())
	}
}

func TestGRPCServerOptionsApply(t *testing.T) {
	var seen atomic.Int64
	b := MustGRPC(t, WithServerOptions(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen.Add(1)
		return h(ctx, req)
	})))
	cc := dialGRPC(t, b.Addr(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := testpb.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 1 {
		t.Fatalf("interceptor saw %d calls; want 1", seen.Load())
	}
}

func TestHTTPWithoutCancelFinishesRequestsWhoseClientLeft(t *testing.T) {
	b := MustHTTP(t, WithCapacity(1), WithLatency(time.Minute), WithoutCancel())
	c := plainClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL(), nil)
		_, err := c.Do(req)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.InFlight() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("canceled request succeeded")
	}
	// The backend still works on it: its one worker stays taken, so the
	// next request queues behind the abandoned one.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	req, _ := http.NewRequestWithContext(ctx2, http.MethodGet, b.URL(), nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("second request was served: the abandoned one was dropped")
	}
	if b.InFlight() < 1 {
		t.Fatalf("in flight after the client left: %d; want the abandoned request", b.InFlight())
	}
}
