package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/smartroute/smartroute/internal/ports"
)

// Timing of the embedded servers. Short ticks make leader elections and
// fault recovery fast; 25 ms/250 ms stays stable under -race on two cores.
const (
	tickMs     = 25
	electionMs = 250

	// readyTimeout bounds how long a start or restart may take before the
	// test fails. A single node is normally ready in well under a second.
	readyTimeout = 20 * time.Second

	// startAttempts is how often a cluster is started on fresh ports when
	// another process took one of the ports between allocation and bind.
	startAttempts = 5
)

// Cluster is a running etcd cluster of one or more members, owned by one test.
// Its methods fail the test (t.Fatal) rather than return errors: they are
// test helpers, not an API.
type Cluster struct {
	cfg     config
	members []*Member
}

type config struct {
	size      int
	clientTLS *TLS
	auth      *Auth
}

// Option configures a Cluster.
type Option func(*config)

// WithMembers sets the number of members (default 1). Use 3 for fault tests
// that stop one member at a time.
func WithMembers(n int) Option {
	return func(c *config) { c.size = n }
}

// TLS is the server side of client-certificate TLS for etcd's client port.
// Files are PEM; the client certificate must be signed by CAFile.
type TLS struct {
	CertFile string
	KeyFile  string
	CAFile   string
}

// WithClientTLS serves the client port over TLS and requires client
// certificates signed by tls.CAFile.
func WithClientTLS(t TLS) Option {
	return func(c *config) { c.clientTLS = &t }
}

// Auth turns on etcd's authentication with a root user.
type Auth struct {
	RootPassword string
	// TokenTTL is how long an unused simple token stays valid (etcd's
	// --auth-token-ttl, whole seconds; 0 keeps etcd's 300 s). A token
	// expires when no request has used it for that long; lease
	// keepalives do not use it. Tests of token expiry set 1 or 2 s.
	TokenTTL time.Duration
}

// WithAuth enables etcd authentication with a "root" user holding the given
// password, with simple tokens. Client(t) then logs in as root.
func WithAuth(a Auth) Option {
	return func(c *config) { c.auth = &a }
}

// Start starts an etcd cluster and waits until it serves requests. The
// cluster is stopped and its data removed by t.Cleanup.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	cfg := config{size: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.size < 1 {
		t.Fatalf("etcdtest: cluster size %d, want at least 1", cfg.size)
	}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		c, err := start(t, cfg)
		if err == nil {
			t.Cleanup(c.close)
			if cfg.auth != nil {
				c.enableAuth(t)
			}
			return c
		}
		lastErr = err
		if !isAddrInUse(err) {
			break
		}
	}
	t.Fatalf("etcdtest: start: %v", lastErr)
	return nil
}

func start(t testing.TB, cfg config) (*Cluster, error) {
	ports, err := freePorts(4 * cfg.size)
	if err != nil {
		return nil, err
	}
	root := t.TempDir()
	c := &Cluster{cfg: cfg}
	proxies := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var initial []string
	for i := 0; i < cfg.size; i++ {
		m := &Member{
			cluster:       c,
			name:          fmt.Sprintf("m%d", i),
			dir:           filepath.Join(root, fmt.Sprintf("m%d", i)),
			proxyPort:     ports[4*i],
			clientPort:    ports[4*i+1],
			peerProxyPort: ports[4*i+2],
			peerPort:      ports[4*i+3],
		}
		m.proxy = toxiproxy.NewProxy(proxies, m.name,
			fmt.Sprintf("127.0.0.1:%d", m.proxyPort),
			fmt.Sprintf("127.0.0.1:%d", m.clientPort))
		m.peerProxy = toxiproxy.NewProxy(proxies, m.name+"-peer",
			fmt.Sprintf("127.0.0.1:%d", m.peerProxyPort),
			fmt.Sprintf("127.0.0.1:%d", m.peerPort))
		c.members = append(c.members, m)
		initial = append(initial, fmt.Sprintf("%s=%s", m.name, m.peerURL().String()))
	}
	initialCluster := strings.Join(initial, ",")
	for _, m := range c.members {
		m.initialCluster = initialCluster
	}
	if err := c.startMembers(c.members); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// startMembers starts the given members concurrently (a member of a
// multi-member cluster is only ready once a quorum is up) and waits until
// each is ready.
func (c *Cluster) startMembers(ms []*Member) error {
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.start()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close kills every running member. Followers go first and the leader
// last: a leader killed while its peers still run would try to hand over
// leadership through a raft loop that no longer runs, and wait for the
// request timeout.
func (c *Cluster) close() {
	var leader *Member
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m.IsLeader() {
			leader = m
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop(true)
		}()
	}
	wg.Wait()
	if leader != nil {
		leader.stop(true)
	}
}

// Endpoints returns the client URLs of every member, running or not, in
// member order. A client given all of them fails over between members.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL()
	}
	return eps
}

// Members returns the members in a fixed order.
func (c *Cluster) Members() []*Member { return c.members }

// Member returns member i.
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// ClientConfig returns a client configuration for all members, with TLS and
// credentials when the cluster has them, and a silent logger.
func (c *Cluster) ClientConfig() clientv3.Config {
	cfg := clientv3.Config{
		Endpoints:            c.Endpoints(),
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
	}
	if c.cfg.clientTLS != nil {
		cfg.TLS = c.clientTLSConfig()
	}
	if c.cfg.auth != nil {
		cfg.Username = "root"
		cfg.Password = c.cfg.auth.RootPassword
	}
	return cfg
}

func (c *Cluster) clientTLSConfig() *tls.Config {
	info := transport.TLSInfo{
		CertFile:      c.cfg.clientTLS.CertFile,
		KeyFile:       c.cfg.clientTLS.KeyFile,
		TrustedCAFile: c.cfg.clientTLS.CAFile,
	}
	tc, err := info.ClientConfig()
	if err != nil {
		panic(fmt.Sprintf("etcdtest: client TLS: %v", err))
	}
	return tc
}

// Client returns a new client connected to every member. It is closed by
// t.Cleanup; callers may close it earlier.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(c.ClientConfig())
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the member that currently leads, waiting until an
// election has finished and every running member follows the same leader.
// A request sent to a member that still follows a dead leader times out, so
// fault tests call Leader before they rely on the survivors.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		if m := c.agreedLeader(); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: no agreed leader after %v", readyTimeout)
		}
		time.Sleep(tickMs * time.Millisecond)
	}
}

func (c *Cluster) agreedLeader() *Member {
	var leader *Member
	var id uint64
	for _, m := range c.members {
		lead, self, ok := m.raftView()
		if !ok {
			continue
		}
		if lead == 0 || (id != 0 && lead != id) {
			return nil
		}
		id = lead
		if lead == self {
			leader = m
		}
	}
	return leader
}

// Stop kills every member, keeping their data, as in a full outage.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.close()
}

// Restart starts every stopped member again with its data and waits until
// the cluster serves requests.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	var stopped []*Member
	for _, m := range c.members {
		if !m.Running() {
			stopped = append(stopped, m)
		}
	}
	if err := c.startMembers(stopped); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Compact compacts the key-value store up to its current revision and
// returns that revision. Watches started from an older revision then fail
// with rpctypes.ErrCompacted.
func (c *Cluster) Compact(t testing.TB) int64 {
	t.Helper()
	cli := c.Client(t)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		t.Fatalf("etcdtest: compact: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("etcdtest: compact at %d: %v", rev, err)
	}
	return rev
}

// RaftIndex returns the highest raft index committed by a running member:
// it grows with every write, lease grant or revoke and authentication, and
// not with reads or lease keepalives. Tests compare it before and after to
// bound the writes a client makes.
func (c *Cluster) RaftIndex() uint64 {
	var idx uint64
	for _, m := range c.members {
		m.mu.Lock()
		if m.e != nil {
			idx = max(idx, m.e.Server.CommittedIndex())
		}
		m.mu.Unlock()
	}
	return idx
}

func (c *Cluster) enableAuth(t testing.TB) {
	t.Helper()
	cfg := c.ClientConfig()
	cfg.Username, cfg.Password = "", ""
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: auth client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", c.cfg.auth.RootPassword); err != nil {
		t.Fatalf("etcdtest: add root user: %v", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatalf("etcdtest: grant root role: %v", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatalf("etcdtest: enable auth: %v", err)
	}
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1, below the
// kernel's ephemeral range: members keep their ports across Stop and
// Restart (see package ports). The ports are released before use, so
// another process may take one; Start retries then.
func freePorts(n int) ([]int, error) { return ports.Free(n) }

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}
