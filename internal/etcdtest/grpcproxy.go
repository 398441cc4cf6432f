package etcdtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/smartroute/smartroute/internal/ports"
)

// GRPCProxy is etcd's gRPC proxy (go.etcd.io/etcd/server/v3/proxy/grpcproxy,
// what `etcd grpc-proxy start` runs) serving in process in front of a
// Cluster: the KV, Watch, Lease, Cluster, Maintenance and Auth services,
// wired as etcd's own command wires them, auth tokens of the callers
// included. Many clients' watches on one range share one watch upstream,
// which is how large fleets fan watches out.
//
// Clients reach it through a toxiproxy proxy (Proxy), so that tests can cut
// them off from it.
//
// It refuses a cluster with auth on: the proxy watches the cluster's leader
// through its own client, which carries no token, so etcd refuses that
// watch and the proxy retries it ten times a second; clientv3's watch
// teardown can deadlock under that churn.
type GRPCProxy struct {
	upstream *clientv3.Client
	server   *grpc.Server
	proxy    *toxiproxy.Proxy
	addr     string // what clients dial, through the toxiproxy
	cluster  *Cluster
	cancel   context.CancelFunc
	done     []<-chan struct{}
	served   chan struct{}
}

// StartGRPCProxy starts a gRPC proxy in front of every member of c and
// stops it at the test's cleanup. It serves plain HTTP/2 on loopback; it
// reaches the members with the cluster's TLS, when it has some.
func (c *Cluster) StartGRPCProxy(t testing.TB) *GRPCProxy {
	t.Helper()
	if c.cfg.auth != nil {
		t.Fatal("etcdtest: StartGRPCProxy: not with WithAuth (see GRPCProxy)")
	}
	cfg := c.ClientConfig()
	// As etcd's grpc-proxy command does: forward each caller's token.
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithUnaryInterceptor(grpcproxy.AuthUnaryClientInterceptor),
		grpc.WithStreamInterceptor(grpcproxy.AuthStreamClientInterceptor))
	upstream, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: grpc proxy client: %v", err)
	}
	// The watch and lease proxies run under a context of their own, ended
	// (and waited for) before the upstream client closes: closing the
	// client under their running watches can deadlock clientv3's watch
	// shutdown.
	ctx, cancel := context.WithCancel(context.Background())
	p := &GRPCProxy{upstream: upstream, cluster: c, served: make(chan struct{}), cancel: cancel}

	lg := zap.NewNop()
	kvp, kvDone := grpcproxy.NewKvProxy(upstream)
	watchp, watchDone := grpcproxy.NewWatchProxy(ctx, lg, upstream)
	leasep, leaseDone := grpcproxy.NewLeaseProxy(ctx, upstream)
	clusterp, clusterDone := grpcproxy.NewClusterProxy(lg, upstream, "", "")
	p.done = []<-chan struct{}{kvDone, watchDone, leaseDone, clusterDone}
	p.server = grpc.NewServer(grpc.MaxConcurrentStreams(1 << 20))
	pb.RegisterKVServer(p.server, kvp)
	pb.RegisterWatchServer(p.server, watchp)
	pb.RegisterLeaseServer(p.server, leasep)
	pb.RegisterClusterServer(p.server, clusterp)
	pb.RegisterMaintenanceServer(p.server, grpcproxy.NewMaintenanceProxy(upstream))
	pb.RegisterAuthServer(p.server, grpcproxy.NewAuthProxy(upstream))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		upstream.Close()
		t.Fatalf("etcdtest: grpc proxy listen: %v", err)
	}
	go func() {
		defer close(p.served)
		p.server.Serve(l)
	}()
	t.Cleanup(p.stop)

	port, err := ports.Free(1)
	if err != nil {
		t.Fatalf("etcdtest: grpc proxy: %v", err)
	}
	p.addr = fmt.Sprintf("127.0.0.1:%d", port[0])
	p.proxy = toxiproxy.NewProxy(toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		"grpc-proxy", p.addr, l.Addr().String())
	if err := startProxy(p.proxy); err != nil {
		t.Fatalf("etcdtest: grpc proxy: toxiproxy: %v", err)
	}
	return p
}

// Endpoint returns the URL clients connect to.
func (p *GRPCProxy) Endpoint() string { return "http://" + p.addr }

// Proxy returns the toxiproxy proxy between clients and the gRPC proxy.
func (p *GRPCProxy) Proxy() *toxiproxy.Proxy { return p.proxy }

// ClientConfig returns a client configuration for the gRPC proxy alone.
func (p *GRPCProxy) ClientConfig() clientv3.Config {
	cfg := p.cluster.ClientConfig()
	cfg.Endpoints = []string{p.Endpoint()}
	cfg.TLS = nil
	return cfg
}

// Client returns a new client connected to the gRPC proxy only, closed by
// t.Cleanup.
func (p *GRPCProxy) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(p.ClientConfig())
	if err != nil {
		t.Fatalf("etcdtest: grpc proxy client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (p *GRPCProxy) stop() {
	p.proxy.Stop()
	// Stop, not GracefulStop: watch streams of clients that the test left
	// open would hold a graceful stop forever.
	p.server.Stop()
	<-p.served
	p.cancel()
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	for _, d := range p.done {
		select {
		case <-d:
		case <-timeout.C:
		}
	}
	p.upstream.Close()
}
