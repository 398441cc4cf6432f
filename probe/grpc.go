package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ErrNotServing is wrapped by the error of a gRPC health check whose answer
// is anything but SERVING.
var ErrNotServing = errors.New("probe: grpc health: not serving")

// GRPCHealth checks an address with the standard grpc.health.v1 Health/Check
// RPC. Every check uses a fresh connection, so the RTT includes the connect,
// the HTTP/2 (and TLS) handshake and the RPC.
type GRPCHealth struct {
	// Service is the service name asked about; "" asks about the server
	// as a whole.
	Service string
	// TLS, when set, secures the connection; nil means plaintext.
	TLS *tls.Config
}

// Check calls Health/Check on addr. Answers other than SERVING fail with an
// error wrapping ErrNotServing.
func (g GRPCHealth) Check(ctx context.Context, addr string) (time.Duration, error) {
	creds := insecure.NewCredentials()
	if g.TLS != nil {
		creds = credentials.NewTLS(g.TLS)
	}
	start := time.Now()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, fmt.Errorf("probe: grpc %s: %w", addr, err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service})
	rtt := time.Since(start)
	if err != nil {
		return rtt, fmt.Errorf("probe: grpc health %s: %w", addr, err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return rtt, fmt.Errorf("%w: %s service %q is %s", ErrNotServing, addr, g.Service, st)
	}
	return rtt, nil
}
