package resolver_test

import (
	"context"
	"maps"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// backend is a real gRPC server on loopback serving the health service.
type backend struct{ addr string }

func startBackend(t *testing.T) backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return backend{addr: lis.Addr().String()}
}

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin),
	}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%q): %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rpc sends one health check and returns the address of the server that
// answered, or "" if it failed.
func rpc(ctx context.Context, conn *grpc.ClientConn) string {
	var p peer.Peer
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(rctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// reachAll sends RPCs until every one of want has answered; any answer
// from a server outside allowed fails the test.
func reachAll(t *testing.T, ctx context.Context, conn *grpc.ClientConn, allowed map[string]bool, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for {
		addr := rpc(ctx, conn)
		if addr != "" && !allowed[addr] {
			t.Fatalf("RPC reached %s, which is not registered (registered: %v)", addr, allowed)
		}
		seen[addr] = true
		all := true
		for _, w := range want {
			all = all && seen[w]
		}
		if all {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("RPCs reached %v, want all of %v", seen, want)
		}
	}
}

// avoid sends RPCs until n in a row have avoided gone.
func avoid(t *testing.T, ctx context.Context, conn *grpc.ClientConn, gone string, n int) {
	t.Helper()
	for run := 0; run < n; {
		switch addr := rpc(ctx, conn); addr {
		case gone:
			run = 0
		case "":
		default:
			run++
		}
		if ctx.Err() != nil {
			t.Fatalf("RPCs still reach %s", gone)
		}
	}
}

func TestGRPCBuilderRoutesRPCsToRegisteredServers(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 30*time.Second)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	b1, b2, b3 := startBackend(t), startBackend(t), startBackend(t)

	r1 := register(t, ctx, cli, registry.Instance{Service: "api", Addr: b1.addr})
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: b2.addr})
	conn := dial(t, "etcd:///api", grpc.WithResolvers(resolver.NewGRPCBuilder(cli, resolver.WithLogger(testlog.New(t)))))
	allowed := map[string]bool{b1.addr: true, b2.addr: true}
	reachAll(t, ctx, conn, allowed, b1.addr, b2.addr)

	register(t, ctx, cli, registry.Instance{Service: "api", Addr: b3.addr})
	allowed[b3.addr] = true
	reachAll(t, ctx, conn, allowed, b3.addr)

	// b1 still serves: only the resolver can make RPCs leave it.
	if err := r1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	avoid(t, ctx, conn, b1.addr, 30)
	delete(allowed, b1.addr)
	reachAll(t, ctx, conn, allowed, b2.addr, b3.addr)
}

func TestGRPCBuilderForDNSSRVReachesServers(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 20*time.Second)
	b1, b2 := startBackend(t), startBackend(t)
	s := dnstest.Start(t)
	port := func(addr string) uint16 {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return uint16(n)
	}
	s.SetA("local.example.test", 30, "127.0.0.1")
	s.SetSRV("_api._tcp.example.test", 30,
		dnstest.SRV{Priority: 1, Weight: 1, Port: port(b1.addr), Target: "local.example.test"},
		dnstest.SRV{Priority: 1, Weight: 1, Port: port(b2.addr), Target: "local.example.test"})
	builder, err := resolver.NewGRPCBuilderForScheme(resolver.SchemeDNSSRV, resolver.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, "dns+srv://"+s.Addr()+"/_api._tcp.example.test", grpc.WithResolvers(builder))
	reachAll(t, ctx, conn, map[string]bool{b1.addr: true, b2.addr: true}, b1.addr, b2.addr)
}

// recordingCC is the gRPC side of a resolver, recording what it is told.
// Embedding the interface, as grpc's own tests do, keeps it compiling as
// the interface grows.
type recordingCC struct {
	grpcresolver.ClientConn
	updates chan grpcresolver.State
	errs    chan error
}

func newRecordingCC() *recordingCC {
	return &recordingCC{updates: make(chan grpcresolver.State, 100), errs: make(chan error, 100)}
}

func (c *recordingCC) UpdateState(s grpcresolver.State) error { c.updates <- s; return nil }
func (c *recordingCC) ReportError(err error)                  { c.errs <- err }

func (c *recordingCC) nextState(t *testing.T, ctx context.Context) grpcresolver.State {
	t.Helper()
	select {
	case s := <-c.updates:
		return s
	case err := <-c.errs:
		t.Fatalf("ReportError(%v), want a state", err)
	case <-ctx.Done():
		t.Fatal("no state")
	}
	return grpcresolver.State{}
}

func build(t *testing.T, b grpcresolver.Builder, target string, cc grpcresolver.ClientConn) grpcresolver.Resolver {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Build(grpcresolver.Target{URL: *u}, cc, grpcresolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%q): %v", target, err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(r.Close) })
	return r
}

func TestGRPCEndpointsCarryEndpointAttributes(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 20*time.Second)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	reg := register(t, ctx, cli, registry.Instance{
		Service: "api", Addr: "127.0.0.1:8001", Weight: 3, Zone: "z1", Labels: map[string]string{"canary": "true"},
	})
	cc := newRecordingCC()
	build(t, resolver.NewGRPCBuilder(cli), "etcd:///api", cc)

	s := cc.nextState(t, ctx)
	if len(s.Endpoints) != 1 || len(s.Endpoints[0].Addresses) != 1 || s.Endpoints[0].Addresses[0].Addr != "127.0.0.1:8001" {
		t.Fatalf("state %+v, want one endpoint with one address", s)
	}
	ep, ok := resolver.EndpointFromGRPC(s.Endpoints[0])
	if !ok || ep.Weight != 3 || ep.Zone != "z1" || !maps.Equal(ep.Labels, map[string]string{"canary": "true"}) || ep.Draining ||
		ep.Origin.Kind != "etcd" {
		t.Fatalf("EndpointFromGRPC = %+v, %v", ep, ok)
	}
	if err := reg.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	drained := cc.nextState(t, ctx)
	if ep, _ := resolver.EndpointFromGRPC(drained.Endpoints[0]); !ep.Draining {
		t.Fatalf("after Drain: %+v, want draining", ep)
	}
	if drained.Endpoints[0].Attributes.Equal(s.Endpoints[0].Attributes) {
		t.Fatal("attributes of a drained endpoint compare equal to the old ones: gRPC would not see the change")
	}
	if _, ok := resolver.EndpointFromGRPC(grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: "x:1"}}}); ok {
		t.Fatal("EndpointFromGRPC found an Endpoint in a foreign gRPC endpoint")
	}
}

func TestGRPCResolverReportsErrorsAndResolvesNow(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 20*time.Second)
	s := dnstest.Start(t)
	s.SetA("local.example.test", 3600, "127.0.0.1")
	s.SetSRV("_api._tcp.example.test", 3600, dnstest.SRV{Priority: 7, Weight: 4, Port: 8001, Target: "local.example.test"})
	builder, err := resolver.NewGRPCBuilderForScheme(resolver.SchemeDNSSRV,
		resolver.WithLogger(testlog.New(t)), resolver.WithNameservers(s.Addr()),
		resolver.WithRefreshInterval(10*time.Millisecond, time.Hour), resolver.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cc := newRecordingCC()
	r := build(t, builder, "dns+srv:///_api._tcp.example.test", cc)
	st := cc.nextState(t, ctx)
	ep, ok := resolver.EndpointFromGRPC(st.Endpoints[0])
	if !ok || ep.Addr != "127.0.0.1:8001" || ep.Weight != 4 || ep.Origin.Priority != 7 {
		t.Fatalf("endpoint %+v, want 127.0.0.1:8001 weight 4 priority 7", ep)
	}

	// Long TTLs: only ResolveNow makes it ask again, and see the failure.
	s.SetFault(dnstest.FaultServFail)
	r.ResolveNow(grpcresolver.ResolveNowOptions{})
	select {
	case err := <-cc.errs:
		t.Logf("reported: %v", err)
	case s := <-cc.updates:
		t.Fatalf("UpdateState(%+v) on a failure; gRPC must keep the last state", s)
	case <-ctx.Done():
		t.Fatal("no ReportError after SERVFAIL")
	}
	s.SetFault(dnstest.FaultNone)
	s.SetSRV("_api._tcp.example.test", 3600, dnstest.SRV{Priority: 7, Weight: 4, Port: 8002, Target: "local.example.test"})
	for {
		r.ResolveNow(grpcresolver.ResolveNowOptions{})
		select {
		case <-cc.errs: // retries that were still failing
			continue
		case st = <-cc.updates:
		case <-ctx.Done():
			t.Fatal("no new state after ResolveNow")
		}
		break
	}
	if len(st.Endpoints) != 1 || st.Endpoints[0].Addresses[0].Addr != "127.0.0.1:8002" {
		t.Fatalf("state after ResolveNow %+v, want 127.0.0.1:8002", st)
	}
	r.Close()
	select {
	case s := <-cc.updates:
		t.Fatalf("UpdateState(%+v) after Close", s)
	default:
	}
}

func TestGRPCBuilderRejectsBadTargets(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	b := resolver.NewGRPCBuilder(c.Client(t))
	if b.Scheme() != "etcd" {
		t.Fatalf("Scheme() = %q", b.Scheme())
	}
	for _, target := range []string{"etcd:///", "etcd://host/api", "etcd:///a/b"} {
		u, _ := url.Parse(target)
		if _, err := b.Build(grpcresolver.Target{URL: *u}, newRecordingCC(), grpcresolver.BuildOptions{}); err == nil {
			t.Errorf("Build(%q) succeeded", target)
		}
	}
	if _, err := resolver.NewGRPCBuilderForScheme("etcd"); err == nil {
		t.Error("etcd builder without a client")
	}
	if _, err := resolver.NewGRPCBuilderForScheme("consul"); err == nil {
		t.Error("builder for an unknown scheme")
	}
}

// Not parallel: gRPC's registry is global and not safe against concurrent
// grpc.NewClient calls; parallel tests wait until sequential ones are done.
func TestRegisterGRPCMakesEtcdSchemeAvailable(t *testing.T) {
	ctx := timeout(t, 20*time.Second)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	if err := resolver.RegisterGRPC(cli, resolver.WithLogger(testlog.New(t))); err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"etcd", "dns+srv"} {
		if grpcresolver.Get(scheme) == nil {
			t.Fatalf("scheme %s not registered", scheme)
		}
	}
	b := startBackend(t)
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: b.addr})
	conn := dial(t, "etcd:///api")
	reachAll(t, ctx, conn, map[string]bool{b.addr: true}, b.addr)
}
