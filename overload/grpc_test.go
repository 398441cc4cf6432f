package overload_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/overload"
)

// dial connects to a gRPC backend through opts.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestUnaryInterceptorThrottlesAServiceThatIsExhausted(t *testing.T) {
	b := testbackend.MustGRPC(t)
	b.SetCode(codes.ResourceExhausted)
	g := mustGuard(t, overload.WithClock(newFakeClock()))
	tc := dial(t, b.Addr(), grpc.WithUnaryInterceptor(overload.UnaryClientInterceptor(g)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 100
	var exhausted, throttled int
	for range n {
		_, err := tc.EmptyCall(ctx, &testpb.Empty{})
		switch st := status.Convert(err); {
		case st.Code() == codes.ResourceExhausted:
			exhausted++
		case st.Code() == codes.Unavailable && errors.Is(err, overload.ErrThrottled):
			throttled++
			if !strings.Contains(st.Message(), `overload: service "api": throttled: rejected locally with probability`) {
				t.Fatalf("message %q does not say throttled and why", st.Message())
			}
		default:
			t.Fatalf("call: %v", err)
		}
	}
	if throttled == 0 || int64(exhausted) != b.Requests() {
		t.Fatalf("%d exhausted (service counted %d), %d throttled", exhausted, b.Requests(), throttled)
	}
	t.Logf("service answering ResourceExhausted: %d of %d calls reached it, %d throttled locally", exhausted, n, throttled)
}

func TestUnaryInterceptorFallback(t *testing.T) {
	b := testbackend.MustGRPC(t)
	b.SetCode(codes.Internal)
	g := mustGuard(t, overload.WithClock(newFakeClock()), overload.WithoutThrottling(),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 3, MinRequests: 3}))
	tc := dial(t, b.Addr(), grpc.WithUnaryInterceptor(overload.UnaryClientInterceptor(g,
		overload.WithUnaryFallback(func(ctx context.Context, method string, req, reply any, err error) error {
			if !errors.Is(err, overload.ErrBreakerOpen) || method != "/grpc.testing.TestService/UnaryCall" {
				return err
			}
			reply.(*testpb.SimpleResponse).Hostname = "fallback"
			return nil
		}))))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}); status.Code(err) != codes.Internal {
			t.Fatalf("before the breaker opened: %v", err)
		}
	}
	resp, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
	if err != nil || resp.GetHostname() != "fallback" {
		t.Fatalf("with the breaker open: %v %v; want the fallback's reply", resp, err)
	}
	// Without a fallback the refusal is Unavailable, saying the breaker is open.
	_, err = tc.EmptyCall(ctx, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "circuit breaker open") {
		t.Fatalf("EmptyCall with the breaker open: %v; want Unavailable, circuit breaker open", err)
	}
	if b.Requests() != 3 {
		t.Fatalf("service saw %d calls; want 3", b.Requests())
	}
}
