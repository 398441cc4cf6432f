package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
)

// peers is a server and a client in two "processes": each with its own
// Store, loading only its own identity, as regagent and a client would.
type peers struct {
	srvStore, cliStore *Store
	srv                *server
	fresh              *http.Client // a new connection per request
	kept               *http.Client // one connection kept alive
}

func newPeers(t *testing.T, e *env) *peers {
	t.Helper()
	p := &peers{
		srvStore: e.store(WithIdentities("api")),
		cliStore: e.store(WithIdentities("web")),
	}
	ready(t, p.srvStore, "api")
	ready(t, p.cliStore, "web")
	p.srv = serve(t, p.srvStore.ServerConfig("api"))
	p.fresh = httpClient(t, p.cliStore.ClientConfig("web", apiName), true)
	p.kept = httpClient(t, p.cliStore.ClientConfig("web", apiName), false)
	return p
}

// sync waits until both Stores have read revision rev.
func (p *peers) sync(t *testing.T, rev int64) {
	t.Helper()
	waitRev(t, p.srvStore, rev)
	waitRev(t, p.cliStore, rev)
}

// TestLeafRotationUnderLoadCostsNoFailedRequest rotates the server's and
// the client's certificates while requests flow over new connections and
// over one kept-alive connection. No request may fail, new handshakes must
// present the new certificates within a second of the write, and the
// established connection must keep working on its original handshake.
func TestLeafRotationUnderLoadCostsNoFailedRequest(t *testing.T) {
	e := newEnv(t)
	api0, web0 := e.ca.Peer(t, []string{apiName}), e.ca.Peer(t, []string{webName})
	e.publish("api", api0)
	e.publish("web", web0)
	p := newPeers(t, e)
	first := mustGet(t, p.kept, p.srv.addr)
	if first.server != serialHex(api0.Cert) {
		t.Fatalf("kept connection sees server %s, want %s", first.server, serialHex(api0.Cert))
	}
	load := startLoad(t, p.fresh, p.srv.addr, 2)
	probe := httpClient(t, p.cliStore.ClientConfig("web", apiName), true)

	const rotations = 5
	var worst time.Duration
	for i := range rotations {
		api, web := e.ca.Peer(t, []string{apiName}), e.ca.Peer(t, []string{webName})
		start := time.Now()
		rev, err := Publish(ctxT(t, 5*time.Second), e.cli, e.kr, "api", api.CertPEM, api.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		var seen result
		waitFor(t, time.Second, "a new handshake presents the new server certificate", func() bool {
			seen = mustGet(t, probe, p.srv.addr)
			return seen.server == serialHex(api.Cert)
		})
		worst = max(worst, time.Since(start))
		p.sync(t, rev)

		start = time.Now()
		if _, err := Publish(ctxT(t, 5*time.Second), e.cli, e.kr, "web", web.CertPEM, web.KeyPEM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Second, "the server sees the new client certificate", func() bool {
			return mustGet(t, probe, p.srv.addr).client == serialHex(web.Cert)
		})
		worst = max(worst, time.Since(start))
		t.Logf("rotation %d: server %s, client %s", i+1, serialHex(api.Cert), serialHex(web.Cert))
	}
	load.check(t)
	if r := mustGet(t, p.kept, p.srv.addr); r.server != first.server || r.client != first.client {
		t.Fatalf("kept connection now sees %+v, want its original handshake %+v", r, first)
	}
	t.Logf("worst time from Publish to a new handshake using the new certificate: %v", worst)
}

// TestCARotationByOverlap follows the documented procedure end to end
// under load: add the new CA to the bundle, rotate the leaves, remove the
// old CA. No request may fail at any step.
func TestCARotationByOverlap(t *testing.T) {
	e := newEnv(t)
	ca1, ca2 := e.ca, certgen.NewCA(t, "ca-2")
	api1, web1 := ca1.Peer(t, []string{apiName}), ca1.Peer(t, []string{webName})
	e.publish("api", api1)
	e.publish("web", web1)
	p := newPeers(t, e)
	before := mustGet(t, p.kept, p.srv.addr)
	load := startLoad(t, p.fresh, p.srv.addr, 2)

	// Removing the old CA first is refused: it signs identities in use.
	if _, err := PublishCA(ctxT(t, 5*time.Second), e.cli, ca2.PEM); !errors.Is(err, ErrOrphanedIdentity) {
		t.Fatalf("PublishCA(new only) before the leaves rotated: err = %v, want ErrOrphanedIdentity", err)
	}

	// 1. Add the new CA.
	load.more(t, 10)
	p.sync(t, e.publishCA(ca1.PEM, ca2.PEM))
	load.more(t, 10)
	// 2. Rotate the leaves.
	api2, web2 := ca2.Peer(t, []string{apiName}), ca2.Peer(t, []string{webName})
	p.sync(t, e.publish("api", api2))
	load.more(t, 10)
	p.sync(t, e.publish("web", web2))
	load.more(t, 10)
	if r := mustGet(t, p.fresh, p.srv.addr); r.server != serialHex(api2.Cert) || r.client != serialHex(web2.Cert) {
		t.Fatalf("after the leaves rotated a new connection sees %+v, want server %s client %s", r, serialHex(api2.Cert), serialHex(web2.Cert))
	}
	// 3. Remove the old CA.
	p.sync(t, e.publishCA(ca2.PEM))
	load.more(t, 10)
	for _, s := range []*Store{p.srvStore, p.cliStore} {
		if !s.CAPool().Equal(certgen.Pool(ca2)) {
			t.Fatal("a store does not use the new bundle")
		}
	}
	if r := mustGet(t, p.fresh, p.srv.addr); r.server != serialHex(api2.Cert) {
		t.Fatalf("after the old CA went a new connection sees %s", r.server)
	}
	load.check(t)

	// The connection established under the old CA keeps working.
	if r := mustGet(t, p.kept, p.srv.addr); r != before {
		t.Fatalf("kept connection now sees %+v, want %+v", r, before)
	}
	// A client still holding an old-CA certificate is refused now.
	old := httpClient(t, &tls.Config{Certificates: []tls.Certificate{web1.TLSCertificate(t)}, RootCAs: certgen.Pool(ca2), ServerName: apiName, MinVersion: tls.VersionTLS12}, true)
	if _, err := get(old, p.srv.addr); err == nil {
		t.Fatal("a client with a certificate from the removed CA was accepted")
	}
}

// TestBundleThatOrphansIdentitiesIsRefused writes a bundle without the old
// CA straight to etcd before the leaves are rotated: the Stores refuse it
// (each checks every identity, not only the one it loads) and keep the old
// bundle; written again once the leaves are rotated, it is taken.
func TestBundleThatOrphansIdentitiesIsRefused(t *testing.T) {
	e := newEnv(t)
	ca1, ca2 := e.ca, certgen.NewCA(t, "ca-2")
	e.publish("api", ca1.Peer(t, []string{apiName}))
	e.publish("web", ca1.Peer(t, []string{webName}))
	p := newPeers(t, e)
	load := startLoad(t, p.fresh, p.srv.addr, 1)

	p.sync(t, e.publishCA(ca1.PEM, ca2.PEM))
	p.sync(t, e.put(CAKey(""), string(ca2.PEM)))
	load.more(t, 10)
	for _, s := range []*Store{p.srvStore, p.cliStore} {
		if rej := s.CARejected(); rej == nil || rej.Reason != ReasonOrphaned || !errors.Is(rej, ErrOrphanedIdentity) {
			t.Fatalf("CARejected() = %v, want orphaned", rej)
		}
		if !s.CAPool().Equal(certgen.Pool(ca1, ca2)) {
			t.Fatal("the orphaning bundle was taken")
		}
	}
	mustGet(t, p.fresh, p.srv.addr)

	// Publish checks against the bundle in etcd (ca2 only), so these go in.
	p.sync(t, e.publish("api", ca2.Peer(t, []string{apiName})))
	p.sync(t, e.publish("web", ca2.Peer(t, []string{webName})))
	for _, s := range []*Store{p.srvStore, p.cliStore} {
		if !s.CAPool().Equal(certgen.Pool(ca1, ca2)) {
			t.Fatal("the refused bundle was taken without being written again")
		}
	}
	p.sync(t, e.publishCA(ca2.PEM))
	for _, s := range []*Store{p.srvStore, p.cliStore} {
		if !s.CAPool().Equal(certgen.Pool(ca2)) {
			t.Fatal("the bundle written again was not taken")
		}
	}
	load.check(t)
}

// TestEtcdOutageKeepsLastGoodMaterial stops etcd under load: handshakes go
// on with the material loaded; once etcd is back the Stores converge on
// what is written then.
func TestEtcdOutageKeepsLastGoodMaterial(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	p := newPeers(t, e)
	load := startLoad(t, p.fresh, p.srv.addr, 2)

	e.etcd.Stop(t)
	base := load.ok.Load()
	waitFor(t, 30*time.Second, "requests succeed while etcd is down", func() bool { return load.ok.Load() >= base+20 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := NewStore(ctx, e.cli)
	cancel()
	if err == nil {
		t.Fatal("NewStore succeeded while etcd was down")
	}

	e.etcd.Restart(t)
	api := e.ca.Peer(t, []string{apiName})
	rev := e.publish("api", api)
	p.sync(t, rev)
	waitFor(t, time.Second, "new handshakes present the certificate written after the outage", func() bool {
		return mustGet(t, p.fresh, p.srv.addr).server == serialHex(api.Cert)
	})
	load.check(t)
}

// TestWatchRelistsAfterCompaction cuts a Store off its etcd member while
// the certificate changes and the history is compacted: when it is back,
// its watch cannot resume (ErrCompacted), so it lists again and converges.
func TestWatchRelistsAfterCompaction(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	e := &env{t: t, etcd: c, ca: certgen.NewCA(t, "ca-1"), logs: &syncBuffer{}}
	e.cli = c.Client(t)
	e.kek, _ = GenerateKEK("kek-1")
	e.kr, _ = NewKeyring(e.kek)
	e.publishCA(e.ca.PEM)
	e.publish("api", e.ca.Peer(t, []string{apiName}))

	// The Store talks to member 0 only; the writes go through 1 and 2.
	m0 := c.Member(0)
	storeCli := m0.Client(t)
	s, err := NewStore(ctxT(t, 10*time.Second), storeCli, WithKeyring(e.kr), WithLogger(e.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ready(t, s, "api")
	cfg := c.ClientConfig()
	cfg.Endpoints = []string{c.Member(1).ClientURL(), c.Member(2).ClientURL()}
	cfg.Logger = zap.NewNop()
	writer, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()

	m0.Proxy().Stop()
	api := e.ca.Peer(t, []string{apiName})
	rev, err := Publish(ctxT(t, 10*time.Second), writer, e.kr, "api", api.CertPEM, api.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Put(ctxT(t, 5*time.Second), "/elsewhere", "x"); err != nil {
		t.Fatal(err)
	}
	resp, err := writer.Get(ctxT(t, 5*time.Second), "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Compact(ctxT(t, 5*time.Second), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if err := m0.Proxy().Start(); err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, rev)
	cert, err := s.Certificate("api")
	if err != nil || serialHex(cert.Leaf) != serialHex(api.Cert) {
		t.Fatalf("after compaction the store serves %v (%v), want %s", cert, err, serialHex(api.Cert))
	}
	if !strings.Contains(e.logs.String(), "fell behind a compaction") {
		t.Fatalf("the store did not report the compaction; logs:\n%s", e.logs)
	}
}
