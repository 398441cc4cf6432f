package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Member is one etcd server of a Cluster. It keeps its ports and data
// directory across stops and restarts.
type Member struct {
	cluster        *Cluster
	name           string
	dir            string
	proxyPort      int // what clients dial: a toxiproxy in front of clientPort
	clientPort     int // where the server listens
	peerProxyPort  int // what peers dial: a toxiproxy in front of peerPort
	peerPort       int // where the server listens for peers
	proxy          *toxiproxy.Proxy
	peerProxy      *toxiproxy.Proxy
	initialCluster string

	mu   sync.Mutex
	e    *embed.Etcd  // nil while stopped
	gate *handlerGate // e's unary handlers
}

// Name returns the member's name ("m0", "m1", …).
func (m *Member) Name() string { return m.name }

// ClientURL returns the URL clients connect to. It leads to the member
// through a TCP proxy, so that Kill cuts client connections at once, as a
// crash would, and so that faults can be injected with Proxy.
func (m *Member) ClientURL() string {
	return fmt.Sprintf("%s://127.0.0.1:%d", m.scheme(), m.proxyPort)
}

func (m *Member) serverClientURL() string {
	return fmt.Sprintf("%s://127.0.0.1:%d", m.scheme(), m.clientPort)
}

func (m *Member) scheme() string {
	if m.cluster.cfg.clientTLS != nil {
		return "https"
	}
	return "http"
}

// Proxy returns the toxiproxy proxy between clients and this member, for
// tests that add latency, blackhole or reset etcd traffic.
func (m *Member) Proxy() *toxiproxy.Proxy { return m.proxy }

// CutOff stops all client traffic to and from the member without closing
// a connection, as a network partition between the member and its
// clients does: requests and watches through ClientURL get no answer,
// while the member keeps serving its peers. It returns a function that
// lets traffic through again.
func (m *Member) CutOff(t testing.TB) (restore func()) {
	t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		body := fmt.Sprintf(`{"name":"cutoff_%s","type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, stream, stream)
		if _, err := m.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			t.Fatalf("etcdtest: cut off %s: %v", m.name, err)
		}
	}
	return func() { m.proxy.Toxics.ResetToxics(context.Background()) }
}

// peerURL is the URL peers dial. Peer traffic also passes a proxy: etcd's
// own shutdown leaves peer connections between in-process members open,
// and cutting them at the proxy ends them on both sides.
func (m *Member) peerURL() *url.URL {
	u := mustURL(fmt.Sprintf("http://127.0.0.1:%d", m.peerProxyPort))
	return &u
}

// Running reports whether the member is started.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.e != nil
}

// IsLeader reports whether the member is running and is the raft leader.
func (m *Member) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return false
	}
	s := m.e.Server
	return s.Leader() == s.MemberID()
}

// raftView returns the leader the member follows and its own ID; ok is
// false while the member is stopped.
func (m *Member) raftView() (lead, self uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return 0, 0, false
	}
	return uint64(m.e.Server.Leader()), uint64(m.e.Server.MemberID()), true
}

// Kill stops the member at once, without handing over leadership, as a
// crash would. Its data stays for Restart.
func (m *Member) Kill(t testing.TB) {
	t.Helper()
	m.stop(true)
}

// Stop stops the member gracefully: a leader first hands over leadership.
func (m *Member) Stop(t testing.TB) {
	t.Helper()
	m.stop(false)
}

// Restart starts a stopped member again with its data and waits until it
// has rejoined the cluster and serves requests.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatalf("etcdtest: restart %s: %v", m.name, err)
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	if m.e != nil {
		m.mu.Unlock()
		return fmt.Errorf("member %s already running", m.name)
	}
	m.mu.Unlock()

	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	cfg.TickMs = tickMs
	cfg.ElectionMs = electionMs
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = 4 // bcrypt.MinCost: tests hash passwords, they need not resist cracking
	cfg.EnableGRPCGateway = false
	gate := new(handlerGate)
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{gate.serverOption()}
	cfg.InitialCluster = m.initialCluster
	cfg.InitialClusterToken = "etcdtest"
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.ListenPeerUrls = []url.URL{mustURL(fmt.Sprintf("http://127.0.0.1:%d", m.peerPort))}
	cfg.AdvertisePeerUrls = []url.URL{*m.peerURL()}
	client := mustURL(m.serverClientURL())
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	if a := m.cluster.cfg.auth; a != nil && a.TokenTTL > 0 {
		cfg.AuthToken = "simple"
		cfg.AuthTokenTTL = uint((a.TokenTTL + time.Second - 1) / time.Second)
	}
	if tc := m.cluster.cfg.clientTLS; tc != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       tc.CertFile,
			KeyFile:        tc.KeyFile,
			TrustedCAFile:  tc.CAFile,
			ClientCertAuth: true,
		}
	}

	if err := startProxy(m.peerProxy); err != nil {
		return fmt.Errorf("member %s: peer proxy: %w", m.name, err)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		m.peerProxy.Stop()
		return fmt.Errorf("member %s: %w", m.name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		m.peerProxy.Stop()
		e.Close()
		return fmt.Errorf("member %s: %w", m.name, err)
	case <-time.After(readyTimeout):
		m.peerProxy.Stop()
		e.Close()
		return fmt.Errorf("member %s: not ready after %v", m.name, readyTimeout)
	}
	if err := startProxy(m.proxy); err != nil {
		m.peerProxy.Stop()
		e.Close()
		return fmt.Errorf("member %s: proxy: %w", m.name, err)
	}
	m.mu.Lock()
	m.e, m.gate = e, gate
	m.mu.Unlock()
	return nil
}

func (m *Member) stop(hard bool) {
	m.mu.Lock()
	e, gate := m.e, m.gate
	m.e, m.gate = nil, nil
	m.mu.Unlock()
	if e == nil {
		return
	}
	m.proxy.Stop()
	m.peerProxy.Stop()
	gate.close()
	if hard {
		e.Server.HardStop()
	}
	e.Close()
	<-e.Server.StopNotify()
}

// Client returns a client connected to this member only, closed by
// t.Cleanup.
func (m *Member) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := m.cluster.ClientConfig()
	cfg.Endpoints = []string{m.ClientURL()}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client for %s: %v", m.name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// startProxy starts p on its fixed port, retrying for a while when the port
// is taken: between a Stop and a Restart, another test's short-lived
// socket may hold it for a moment.
func startProxy(p *toxiproxy.Proxy) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := p.Start()
		if err == nil || !isAddrInUse(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
