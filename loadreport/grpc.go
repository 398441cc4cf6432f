package loadreport

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"
)

// alwaysExcluded are the gRPC services whose calls are never counted as
// requests in flight: health checks (probes; Watch is a long-lived
// stream), the ORCA out-of-band stream, and server reflection streams.
var alwaysExcluded = [...]string{
	"/grpc.health.v1.Health/",
	"/xds.service.orca.v3.OpenRcaService/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// ServerOptions returns the options that make every RPC of a grpc.Server
// carry a load report in its trailer (key endpoint-load-metrics-bin, a
// binary OrcaLoadReport, as grpc-go's weighted_round_robin and Envoy read
// it): grpc-go's orca.CallMetricsServerOption with r as the metrics
// provider, then r's unary and stream interceptors, which count the calls
// in flight. Pass them first to grpc.NewServer so that the interceptors run
// outside the application's own:
//
//	srv := grpc.NewServer(append(rep.ServerOptions(), grpc.Creds(creds))...)
//
// A server that already installs orca.CallMetricsServerOption with its own
// provider should add only r's interceptors (UnaryServerInterceptor,
// StreamServerInterceptor): its trailers then carry RIF beside its own
// metrics. Installing both would send two reports.
func (r *Reporter) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		orca.CallMetricsServerOption(r),
		grpc.ChainUnaryInterceptor(r.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(r.StreamServerInterceptor()),
	}
}

// UnaryServerInterceptor counts each unary call (except excluded methods,
// see WithExcludedMethods) as in flight while its handler runs, and then
// records RIF, the calls still in flight, in the call's ORCA recorder so
// that the trailer carries it. It must run inside
// orca.CallMetricsServerOption's interceptor (ServerOptions does that);
// without it calls are counted and no trailer is sent.
func (r *Reporter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r.excluded(info.FullMethod) {
			defer r.recordCall(ctx)
			return handler(ctx, req)
		}
		start := r.begin()
		defer func() {
			r.end(start)
			r.recordCall(ctx)
		}()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams: a stream
// counts as in flight for its whole life, so exclude long-lived ones.
func (r *Reporter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := ss.Context()
		if r.excluded(info.FullMethod) {
			defer r.recordCall(ctx)
			return handler(srv, ss)
		}
		start := r.begin()
		defer func() {
			r.end(start)
			r.recordCall(ctx)
		}()
		return handler(srv, ss)
	}
}

// recordCall puts RIF into the call's ORCA recorder, if there is one. It
// runs after the call was counted out: RIF is the others in flight.
func (r *Reporter) recordCall(ctx context.Context) {
	if rec := orca.CallMetricsRecorderFromContext(ctx); rec != nil {
		rec.SetNamedMetric(MetricRIF, float64(max(r.inFlight.Load(), 0)))
	}
}

func (r *Reporter) excluded(method string) bool {
	for _, p := range alwaysExcluded {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	for _, p := range r.exclude {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// ServerMetrics returns the current report as grpc-go's orca.ServerMetrics,
// which makes r an orca.ServerMetricsProvider: RIF and capacity as the
// named metrics "rif" and "capacity", the utilizations and rps_fractional
// when set or measured, -1 (unset) otherwise.
func (r *Reporter) ServerMetrics() *orca.ServerMetrics {
	rep := r.snapshot(0)
	sm := &orca.ServerMetrics{
		CPUUtilization: -1,
		MemUtilization: -1,
		AppUtilization: -1,
		QPS:            -1,
		EPS:            -1,
		Utilization:    map[string]float64{},
		RequestCost:    map[string]float64{},
		NamedMetrics:   map[string]float64{MetricRIF: rep.RIF},
	}
	if rep.Has&FieldCapacity != 0 {
		sm.NamedMetrics[MetricCapacity] = rep.Capacity
	}
	if rep.Has&FieldCPUUtilization != 0 {
		sm.CPUUtilization = rep.CPUUtilization
	}
	if rep.Has&FieldMemUtilization != 0 {
		sm.MemUtilization = rep.MemUtilization
	}
	if rep.Has&FieldAppUtilization != 0 {
		sm.AppUtilization = rep.AppUtilization
	}
	if rep.Has&FieldRPS != 0 {
		sm.QPS = rep.RPS
	}
	return sm
}

// RegisterORCA registers the ORCA out-of-band service
// (xds.service.orca.v3.OpenRcaService) on s with grpc-go's orca.Register,
// reporting what ServerMetrics returns. grpc-go's service sends a report as
// soon as a client opens the stream and then at most every 30 seconds (its
// floor; a client may ask for less often): the first report is what a
// probe reads (probe.GRPCHealth.OOB).
func (r *Reporter) RegisterORCA(s grpc.ServiceRegistrar) error {
	return orca.Register(s, orca.ServiceOptions{ServerMetricsProvider: r})
}
