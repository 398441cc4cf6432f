package resolver

import (
	"context"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/attributes"
	grpcresolver "google.golang.org/grpc/resolver"
)

// GRPCBuilder is a gRPC name resolver builder (google.golang.org/grpc/resolver.Builder)
// for one of Parse's schemes. Each ClientConn it builds for gets its own
// resolver, running one goroutine that ends when gRPC closes the resolver.
//
// gRPC receives resolver.State.Endpoints, one per endpoint with one
// address each, in the order of State.Endpoints (by address). Each
// endpoint's attributes carry the whole Endpoint (weight, zone, labels,
// draining, origin), read back with EndpointFromGRPC. gRPC's own policies
// (pick_first, round_robin) ignore them, so they still send requests to
// draining endpoints; smartroute's balancer honours them.
//
// A failed refresh goes to ClientConn.ReportError while gRPC keeps the
// last state; ResolveNow makes a DNS resolver query again (no sooner than
// its minimum refresh interval) and is a no-op for the watch-based etcd
// resolver.
//
// Use it per ClientConn with grpc.WithResolvers, or process-wide with
// RegisterGRPC. A GRPCBuilder is safe for concurrent use.
type GRPCBuilder struct {
	scheme string
	opts   []Option
}

// NewGRPCBuilder returns the builder for etcd:///<service> targets, reading
// through cli:
//
//	conn, err := grpc.NewClient("etcd:///api",
//		grpc.WithResolvers(resolver.NewGRPCBuilder(cli)),
//		grpc.WithTransportCredentials(creds))
//
// opts configure the resolvers it builds (WithPrefix, WithLogger,
// WithRegisterer…).
func NewGRPCBuilder(cli *clientv3.Client, opts ...Option) *GRPCBuilder {
	return &GRPCBuilder{scheme: SchemeEtcd, opts: append(opts[:len(opts):len(opts)], WithEtcdClient(cli))}
}

// NewGRPCBuilderForScheme returns the builder for another of Parse's
// schemes, such as SchemeDNSSRV. The etcd scheme needs WithEtcdClient.
func NewGRPCBuilderForScheme(scheme string, opts ...Option) (*GRPCBuilder, error) {
	switch scheme {
	case SchemeEtcd:
		o, err := newOptions(opts)
		if err != nil {
			return nil, err
		}
		if o.etcdClient == nil {
			return nil, fmt.Errorf("resolver: gRPC builder for %s: needs an etcd client (WithEtcdClient)", scheme)
		}
	case SchemeDNS, SchemeDNSSRV, SchemeStatic:
		if _, err := newOptions(opts); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("resolver: gRPC builder: scheme %q: %w", scheme, ErrUnknownScheme)
	}
	return &GRPCBuilder{scheme: scheme, opts: opts}, nil
}

// RegisterGRPC registers, in gRPC's process-wide registry, the builders for
// the etcd scheme (reading through cli; skipped when cli is nil) and the
// dns+srv scheme, so that grpc.NewClient("etcd:///api") works without
// grpc.WithResolvers. Like grpc's resolver.Register it must be called at
// initialisation time (from main or an init function), before any
// ClientConn is created, and is not safe for concurrent use. The dns scheme
// is left to gRPC's own resolver; use NewGRPCBuilderForScheme with
// grpc.WithResolvers to use this package's.
//
// Nothing in this package registers anything by itself.
func RegisterGRPC(cli *clientv3.Client, opts ...Option) error {
	var builders []*GRPCBuilder
	if cli != nil {
		builders = append(builders, NewGRPCBuilder(cli, opts...))
	}
	srv, err := NewGRPCBuilderForScheme(SchemeDNSSRV, opts...)
	if err != nil {
		return err
	}
	for _, b := range append(builders, srv) {
		grpcresolver.Register(b)
	}
	return nil
}

// Scheme implements resolver.Builder.
func (b *GRPCBuilder) Scheme() string { return b.scheme }

// Build implements resolver.Builder: it parses the target as Parse does
// and starts resolving it.
func (b *GRPCBuilder) Build(target grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	raw := target.URL.String()
	if target.URL.Scheme != b.scheme {
		return nil, fmt.Errorf("resolver: gRPC builder for %s got target %q: %w", b.scheme, raw, ErrUnknownScheme)
	}
	t, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	r, err := t.Build(b.opts...)
	if err != nil {
		return nil, err
	}
	o, _ := newOptions(b.opts)
	ctx, cancel := context.WithCancel(context.Background())
	g := &grpcResolver{
		r:      r,
		cc:     cc,
		log:    o.logger.With("target", t.String()),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go g.run(ctx)
	return g, nil
}

// grpcResolver feeds one ClientConn from one Resolver.
type grpcResolver struct {
	r      Resolver
	cc     grpcresolver.ClientConn
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

func (g *grpcResolver) run(ctx context.Context) {
	defer close(g.done)
	err := g.r.Watch(ctx, func(s State) {
		if s.Err != nil {
			// gRPC keeps the last state it was given and passes the
			// error to the balancer.
			g.cc.ReportError(s.Err)
			return
		}
		if err := g.cc.UpdateState(GRPCState(s.Endpoints)); err != nil {
			// The balancer refused the state (an empty set, say). A
			// watch or the next DNS refresh brings the next one.
			g.log.Debug("resolver: gRPC balancer refused the state", "err", err)
		}
	})
	if ctx.Err() == nil && err != nil {
		g.cc.ReportError(err)
	}
}

// ResolveNow implements resolver.Resolver: a DNS resolver queries again
// soon; the etcd resolver, which follows a watch, has nothing to do.
func (g *grpcResolver) ResolveNow(grpcresolver.ResolveNowOptions) {
	if rn, ok := g.r.(interface{ ResolveNow() }); ok {
		rn.ResolveNow()
	}
}

// Close implements resolver.Resolver: it stops resolving and returns once
// the resolver's goroutine has ended; gRPC gets no call after it.
func (g *grpcResolver) Close() {
	g.cancel()
	<-g.done
}

// endpointKey is the attribute key under which GRPCEndpoint stores the
// Endpoint.
type endpointKey struct{}

// endpointAttr is the attribute value: the Endpoint, compared with
// Endpoint.Equal so that a change of origin alone (a new revision or TTL)
// is not a change for gRPC.
type endpointAttr Endpoint

func (a endpointAttr) Equal(o any) bool {
	b, ok := o.(endpointAttr)
	return ok && Endpoint(a).Equal(Endpoint(b))
}

func (a endpointAttr) String() string { return Endpoint(a).Addr }

// GRPCEndpoint returns ep as a gRPC endpoint: one address, ep.Addr, and
// ep itself in the endpoint's attributes, for EndpointFromGRPC. The
// attributes hold a copy of ep's labels.
func GRPCEndpoint(ep Endpoint) grpcresolver.Endpoint {
	ep = cloneEndpoints([]Endpoint{ep})[0]
	return grpcresolver.Endpoint{
		Addresses:  []grpcresolver.Address{{Addr: ep.Addr}},
		Attributes: attributes.New(endpointKey{}, endpointAttr(ep)),
	}
}

// GRPCState returns the gRPC resolver state for a set: its endpoints as
// GRPCEndpoint makes them, and, for balancers that still read them, the
// same addresses in Addresses.
func GRPCState(eps []Endpoint) grpcresolver.State {
	s := grpcresolver.State{
		Endpoints: make([]grpcresolver.Endpoint, len(eps)),
		Addresses: make([]grpcresolver.Address, len(eps)),
	}
	for i, ep := range eps {
		s.Endpoints[i] = GRPCEndpoint(ep)
		s.Addresses[i] = grpcresolver.Address{Addr: ep.Addr}
	}
	return s
}

// EndpointFromGRPC returns the Endpoint that GRPCEndpoint stored in e's
// attributes, and false if e carries none (it came from another
// resolver). The Labels map is shared with the attributes and must not be
// modified.
func EndpointFromGRPC(e grpcresolver.Endpoint) (Endpoint, bool) {
	a, ok := e.Attributes.Value(endpointKey{}).(endpointAttr)
	return Endpoint(a), ok
}
