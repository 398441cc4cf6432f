package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/smartroute/smartroute/loadreport"
)

// ErrNotServing is wrapped by the error of a gRPC health check whose answer
// is anything but SERVING.
var ErrNotServing = errors.New("probe: grpc health: not serving")

// GRPCHealth checks an address with the standard grpc.health.v1 Health/Check
// RPC. Every check uses a fresh connection, so the RTT includes the connect,
// the HTTP/2 (and TLS) handshake and the RPC.
//
// The load report comes from the trailer of the health call: servers that
// use loadreport.Reporter.ServerOptions (or any ORCA per-call reporting that
// covers the health service) send one with every call, so it costs
// nothing and is as fresh as the health answer. Servers that publish load
// only out of band are read with OOB.
type GRPCHealth struct {
	// Service is the service name asked about; "" asks about the server
	// as a whole.
	Service string
	// TLS, when set, secures the connection; nil means plaintext.
	TLS *tls.Config
	// OOB, when the health call's trailer carried no report, asks the
	// ORCA out-of-band service (xds.service.orca.v3.OpenRcaService, as
	// registered by grpc-go's orca.Register or
	// loadreport.Reporter.RegisterORCA) on the check's connection: it
	// sends its current report as soon as the stream opens; the check
	// takes it and closes the stream. It costs a second RPC per check
	// (after the health call, not counted in the RTT), and a server
	// without the service answers Unimplemented every time (in
	// Result.LoadErr), hence off by default. Use it for servers set up
	// for grpc-go's weighted_round_robin with OOB reporting only.
	OOB bool
}

// Check calls Health/Check on addr. Answers other than SERVING fail with an
// error wrapping ErrNotServing.
func (g GRPCHealth) Check(ctx context.Context, addr string) (time.Duration, error) {
	res, err := g.CheckLoad(ctx, addr)
	return res.RTT, err
}

// CheckLoad is Check that also returns the load report of the health call's
// trailer, or with OOB set the ORCA out-of-band service's.
func (g GRPCHealth) CheckLoad(ctx context.Context, addr string) (Result, error) {
	creds := insecure.NewCredentials()
	if g.TLS != nil {
		creds = credentials.NewTLS(g.TLS)
	}
	start := time.Now()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return Result{}, fmt.Errorf("probe: grpc %s: %w", addr, err)
	}
	defer cc.Close()
	var trailer metadata.MD
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service}, grpc.Trailer(&trailer))
	now := time.Now()
	res := Result{RTT: now.Sub(start)}
	// A failed call may still carry a report (an unknown service is
	// NotFound, with the server's load in the trailer).
	if load, lerr := loadreport.FromMetadata(trailer, now); lerr == nil {
		res.Load = load
	} else if !errors.Is(lerr, loadreport.ErrNoReport) {
		res.LoadErr = fmt.Errorf("probe: grpc %s: %w", addr, lerr)
	}
	if err != nil {
		return res, fmt.Errorf("probe: grpc health %s: %w", addr, err)
	}
	if g.OOB && res.Load.IsZero() && res.LoadErr == nil {
		res.Load, res.LoadErr = oobReport(ctx, cc, addr)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return res, fmt.Errorf("%w: %s service %q is %s", ErrNotServing, addr, g.Service, st)
	}
	return res, nil
}

// oobReport reads the first report of an ORCA out-of-band stream on cc and
// closes the stream.
func oobReport(ctx context.Context, cc *grpc.ClientConn, addr string) (loadreport.Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := v3orcaservicepb.NewOpenRcaServiceClient(cc).StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{})
	if err != nil {
		return loadreport.Report{}, fmt.Errorf("probe: grpc orca %s: %w", addr, err)
	}
	p, err := stream.Recv()
	if err != nil {
		return loadreport.Report{}, fmt.Errorf("probe: grpc orca %s: %w", addr, err)
	}
	r, err := loadreport.FromProto(p, time.Now())
	if err != nil {
		return loadreport.Report{}, fmt.Errorf("probe: grpc orca %s: %w", addr, err)
	}
	return r, nil
}
