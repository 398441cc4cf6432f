package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/certgen"
)

// withURI adds a URI SAN (a SPIFFE ID, say) to a certificate.
func withURI(raw string) certgen.Option {
	return func(c *x509.Certificate) {
		u, err := url.Parse(raw)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, u)
	}
}

// TestUnlistedClientIsDenied: a client with a valid certificate that is
// not on the server's allow list is refused at the handshake; the reason
// is in the server's logs and metrics, not in the alert the client gets.
// Listed clients (by DNS name or SPIFFE ID) get through.
func TestUnlistedClientIsDenied(t *testing.T) {
	e := newEnv(t)
	web := e.ca.Peer(t, []string{webName})
	batch := e.ca.Peer(t, []string{"batch.test"}, withURI("spiffe://example.org/ns/prod/sa/batch"))
	intruder := e.ca.Peer(t, []string{"intruder.test"}, withURI("spiffe://example.org/ns/dev/sa/intruder"))
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	reg := prometheus.NewRegistry()
	s := e.store(WithIdentities("api"), WithRegisterer(reg),
		WithAllowedClients("api", "dns:"+webName, "spiffe://example.org/ns/prod/sa/batch"))
	ready(t, s, "api")
	srv := serveTracked(t, s, s.ServerConfig("api"))

	for _, ok := range []*certgen.Leaf{web, batch} {
		if err := handshake(srv.addr, plainClient(t, e.ca, ok)); err != nil {
			t.Fatalf("listed client %s refused: %v", ok.Cert.Subject, err)
		}
	}
	err := handshake(srv.addr, plainClient(t, e.ca, intruder))
	if err == nil {
		t.Fatal("a valid but unlisted client was accepted")
	}
	if strings.Contains(err.Error(), "authorized") || strings.Contains(err.Error(), "allowed") {
		t.Errorf("the client learnt why it was refused: %v", err)
	}
	if got := counter(t, reg, "smartroute_mtls_peer_refused_total", "reason", peerUnauthorized); got != 1 {
		t.Errorf("peer_refused_total{reason=unauthorized} = %v, want 1", got)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "reason=unauthorized") || !strings.Contains(logs, serialHex(intruder.Cert)) || !strings.Contains(logs, "identity=api") {
		t.Errorf("the denial is not logged with reason, identity and serial:\n%s", logs)
	}
	// The error a server-side caller sees wraps ErrNotAuthorized.
	st := s.cur.Load()
	if err := s.verifyPeer(st, sideServer, "api", []*x509.Certificate{intruder.Cert}, "", x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrNotAuthorized) {
		t.Errorf("verifyPeer: %v, want ErrNotAuthorized", err)
	}
}

// TestClientPolicyFromEtcd: a policy at <prefix>/<name>/clients applies
// at once, closes the tracked connections of clients it no longer allows,
// a malformed policy is refused and the last good one stays, deleting it
// lifts it, and WithAllowedClients wins over it.
func TestClientPolicyFromEtcd(t *testing.T) {
	e := newEnv(t)
	web, batch := e.ca.Peer(t, []string{webName}), e.ca.Peer(t, []string{"batch.test"})
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	reg := prometheus.NewRegistry()
	s := e.store(WithIdentities("api"), WithRegisterer(reg))
	ready(t, s, "api")
	srv := serveTracked(t, s, s.ServerConfig("api"))
	webLoad := startLoad(t, httpClient(t, plainClient(t, e.ca, web), false), srv.addr, 1)
	held, err := tls.Dial("tcp", srv.addr, plainClient(t, e.ca, batch))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	webLoad.more(t, 5)

	waitRev(t, s, e.put(ClientsKey("", "api"), `{"allow": ["dns:`+webName+`"]}`))
	waitClosed(t, held, "the connection of a client the new policy excludes")
	if err := handshake(srv.addr, plainClient(t, e.ca, batch)); err == nil {
		t.Fatal("a client excluded by the policy in etcd was accepted")
	}
	if got := counter(t, reg, "smartroute_mtls_connections_closed_total", "reason", peerUnauthorized); got != 1 {
		t.Errorf("connections_closed_total{reason=unauthorized} = %v, want 1", got)
	}
	for _, bad := range []string{`garbage`, `{"allow": []}`, `{"allow": ["web.test"]}`, `{"allow": ["dns:x"], "deny": []}`} {
		waitRev(t, s, e.put(ClientsKey("", "api"), bad))
		if rej := s.ClientPolicyRejected("api"); rej == nil || rej.Reason != ReasonMalformed {
			t.Errorf("policy %s: ClientPolicyRejected = %v, want malformed", bad, rej)
		}
		if err := handshake(srv.addr, plainClient(t, e.ca, batch)); err == nil {
			t.Fatalf("policy %s: the last good policy was dropped", bad)
		}
	}
	del, err := e.cli.Delete(ctxT(t, 5*time.Second), ClientsKey("", "api"))
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, del.Header.Revision)
	if err := handshake(srv.addr, plainClient(t, e.ca, batch)); err != nil {
		t.Fatalf("after the policy's deletion: %v", err)
	}
	webLoad.check(t)

	// The option wins over etcd.
	strict := e.store(WithIdentities("api"), WithAllowedClients("api", "dns:"+webName))
	ready(t, strict, "api")
	waitRev(t, strict, e.put(ClientsKey("", "api"), `{"allow": ["*"]}`))
	strictSrv := serve(t, strict.ServerConfig("api"))
	if err := handshake(strictSrv.addr, plainClient(t, e.ca, batch)); err == nil {
		t.Fatal("a policy in etcd loosened WithAllowedClients")
	}
}

// TestClientRequiresTheServerIdentity: with WithAllowedServers, a client
// accepts only a server holding one of the IDs for the name it calls (a
// SPIFFE ID without any DNS name is enough); another server with a valid
// certificate is refused.
func TestClientRequiresTheServerIdentity(t *testing.T) {
	e := newEnv(t)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	reg := prometheus.NewRegistry()
	const apiID = "spiffe://example.org/ns/prod/sa/api"
	s := e.store(WithIdentities("web"), WithRegisterer(reg), WithAllowedServers(apiName, apiID))
	ready(t, s, "web")
	spiffeOnly := func(id string) *certgen.Leaf {
		// A SPIFFE SVID: a URI SAN and no DNS name.
		return e.ca.Peer(t, []string{"svid"}, withURI(id), func(c *x509.Certificate) { c.DNSNames = nil })
	}
	static := func(l *certgen.Leaf) *server {
		return serve(t, &tls.Config{Certificates: []tls.Certificate{l.TLSCertificate(t)}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: certgen.Pool(e.ca), MinVersion: tls.VersionTLS12})
	}
	good := static(spiffeOnly(apiID))
	impostor := static(spiffeOnly("spiffe://example.org/ns/prod/sa/billing"))
	withDNS := static(e.ca.Peer(t, []string{apiName}))

	c := httpClient(t, s.ClientConfig("web", apiName), true)
	mustGet(t, c, good.addr)
	if _, err := get(c, impostor.addr); err == nil || !strings.Contains(err.Error(), "not among") {
		t.Fatalf("a server with another SPIFFE ID: %v, want refused as unauthorized", err)
	}
	if _, err := get(c, withDNS.addr); err == nil {
		t.Fatal("a server with only the DNS name was accepted although the IDs are required")
	}
	if got := counter(t, reg, "smartroute_mtls_peer_refused_total", "reason", peerUnauthorized); got != 2 {
		t.Errorf("peer_refused_total{reason=unauthorized} = %v, want 2", got)
	}
	// Without the option the SPIFFE-only server fails the host name check.
	plain := e.store(WithIdentities("web"))
	ready(t, plain, "web")
	if _, err := get(httpClient(t, plain.ClientConfig("web", apiName), true), good.addr); err == nil {
		t.Fatal("a server without the DNS name passed the host name check")
	}
}

// TestPeerIDsAreValidated: a bad allow list is an error of NewStore.
func TestPeerIDsAreValidated(t *testing.T) {
	e := newEnv(t)
	for _, ids := range [][]string{nil, {"web.test"}, {"dns:"}, {"uri:not a uri"}, {"spiffe:/x"}} {
		if _, err := NewStore(ctxT(t, 5*time.Second), e.cli, WithAllowedClients("api", ids...)); err == nil {
			t.Errorf("WithAllowedClients(%q) accepted", ids)
		}
	}
}

// TestResumedTrackedConnectionsAreJudgedToo: a connection made by resuming
// a TLS 1.3 session (no certificate sent, GetCertificate not called) is
// tracked with the identity it resumed, so that a client policy written
// later closes it like any other.
func TestResumedTrackedConnectionsAreJudgedToo(t *testing.T) {
	e := newEnv(t)
	batch := e.ca.Peer(t, []string{"batch.test"})
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	s := e.store(WithIdentities("api"))
	ready(t, s, "api")
	srv := serveTracked(t, s, s.ServerConfig("api"))
	cfg := plainClient(t, e.ca, batch)
	cfg.MinVersion, cfg.ClientSessionCache = tls.VersionTLS13, tls.NewLRUClientSessionCache(4)
	request := func() *tls.Conn {
		t.Helper()
		conn, err := tls.Dial("tcp", srv.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: " + apiName + "\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	request().Close()
	held := request()
	defer held.Close()
	if !held.ConnectionState().DidResume {
		t.Fatal("the second connection did not resume; the test shows nothing")
	}
	waitRev(t, s, e.put(ClientsKey("", "api"), `{"allow": ["dns:`+webName+`"]}`))
	waitClosed(t, held, "a resumed connection of a client the new policy excludes")
}
