package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/certgen"
)

// plainClient presents leaf and verifies the server against ca: a client
// that does not use a Store, so that only the server's checks decide.
func plainClient(t testing.TB, ca *certgen.CA, leaf *certgen.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}, RootCAs: certgen.Pool(ca),
		ServerName: apiName, MinVersion: tls.VersionTLS12}
}

// handshake makes one TLS 1.2 handshake to addr and says how it ended.
// In TLS 1.2 the server's verdict on the client certificate is part of
// the handshake (in TLS 1.3 it arrives after the client is done), so a
// refusal shows at once.
func handshake(addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.MaxVersion = tls.VersionTLS12
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// waitClosed waits until the peer (or a sweep) closes conn.
func waitClosed(t *testing.T, conn *tls.Conn, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	var ne interface{ Timeout() bool }
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("%s: still open after 10s (read: %v)", what, err)
	}
}

// TestRevokedClientIsRefusedAndItsConnectionsClosedUnderLoad: a stolen
// client certificate is revoked while other clients keep the server busy
// over new and kept-alive connections. New handshakes presenting it are
// refused, by the server and by its own Store (which no longer serves
// it); the connection it holds open is closed by the server; nobody else
// sees a failed request.
func TestRevokedClientIsRefusedAndItsConnectionsClosedUnderLoad(t *testing.T) {
	e := newEnv(t)
	thief := e.ca.Peer(t, []string{"thief.test"})
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	e.publish("thief", thief)
	reg := prometheus.NewRegistry()
	srvStore := e.store(WithIdentities("api"), WithRegisterer(reg))
	cliStore := e.store(WithIdentities("web", "thief"))
	ready(t, srvStore, "api")
	ready(t, cliStore, "web", "thief")
	srv := serveTracked(t, srvStore, srvStore.ServerConfig("api"))

	fresh := startLoad(t, httpClient(t, cliStore.ClientConfig("web", apiName), true), srv.addr, 2)
	kept := startLoad(t, httpClient(t, cliStore.ClientConfig("web", apiName), false), srv.addr, 1)
	fresh.more(t, 10)
	kept.more(t, 10)

	// The thief holds a connection open and can make new ones.
	thiefCfg := plainClient(t, e.ca, thief)
	if err := handshake(srv.addr, thiefCfg); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	held, err := tls.Dial("tcp", srv.addr, cliStore.ClientConfig("thief", apiName))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	start := time.Now()
	rev, err := Revoke(ctxT(t, 10*time.Second), e.cli, []Revocation{{Serial: serialHex(thief.Cert), Reason: "laptop stolen"}})
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, held, "the thief's open connection")
	closedAfter := time.Since(start)
	var refusedAfter time.Duration
	waitFor(t, 10*time.Second, "a new handshake with the revoked certificate refused", func() bool {
		if handshake(srv.addr, thiefCfg) == nil {
			return false
		}
		refusedAfter = time.Since(start)
		return true
	})
	t.Logf("revocation written at revision %d: the open connection closed after %v, new handshakes refused after %v", rev, closedAfter, refusedAfter)

	waitRev(t, cliStore, rev)
	if _, err := cliStore.Certificate("thief"); !errors.Is(err, ErrNoIdentity) || !errors.Is(err, ErrRevoked) {
		t.Errorf("the client's Store still serves the revoked identity: %v", err)
	}
	if _, err := tls.Dial("tcp", srv.addr, cliStore.ClientConfig("thief", apiName)); err == nil {
		t.Error("a handshake through the client's Store presented the revoked identity")
	}
	if got := counter(t, reg, "smartroute_mtls_connections_closed_total", "reason", peerRevoked); got < 1 {
		t.Errorf("connections_closed_total{reason=revoked} = %v, want >= 1", got)
	}
	if got := counter(t, reg, "smartroute_mtls_peer_refused_total", "reason", peerRevoked); got < 1 {
		t.Errorf("peer_refused_total{reason=revoked} = %v, want >= 1", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "reason=revoked") || !strings.Contains(logs, serialHex(thief.Cert)) {
		t.Error("the refusal is not logged with its reason and the serial")
	}
	fresh.more(t, 10)
	kept.more(t, 10)
	fresh.check(t)
	kept.check(t)
}

// TestRevokedServerIsDroppedByItsClients: a server certificate is revoked
// while a client sends to it and to another server. The client closes its
// pooled connection to the revoked server and refuses new handshakes with
// it (the reason in its logs and metrics); requests to the other server
// never fail.
func TestRevokedServerIsDroppedByItsClients(t *testing.T) {
	e := newEnv(t)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	reg := prometheus.NewRegistry()
	cli := e.store(WithIdentities("web"), WithRegisterer(reg))
	ready(t, cli, "web")
	// Two servers of the service outside any Store: only the client's
	// checks decide.
	bad, good := e.ca.Peer(t, []string{apiName}), e.ca.Peer(t, []string{apiName})
	static := func(l *certgen.Leaf) *server {
		return serve(t, &tls.Config{Certificates: []tls.Certificate{l.TLSCertificate(t)}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: certgen.Pool(e.ca), MinVersion: tls.VersionTLS12})
	}
	badSrv, goodSrv := static(bad), static(good)
	cfg := cli.ClientConfig("web", apiName)
	load := startLoad(t, dialClient(t, cli, cfg, false), goodSrv.addr, 2)
	freshLoad := startLoad(t, dialClient(t, cli, cfg, true), goodSrv.addr, 1)
	load.more(t, 10)

	toBad := dialClient(t, cli, cfg, false)
	mustGet(t, toBad, badSrv.addr)
	pooled, err := cli.DialTLS(cfg, nil)(ctxT(t, 5*time.Second), "tcp", badSrv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.Close()

	rev, err := Revoke(ctxT(t, 10*time.Second), e.cli, []Revocation{{SPKISHA256: SPKIPin(bad.Cert), Reason: "key compromise"}})
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, pooled.(*tls.Conn), "the pooled connection to the revoked server")
	waitRev(t, cli, rev)
	_, err = get(toBad, badSrv.addr)
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a request to the revoked server: %v, want refused as revoked", err)
	}
	if got := counter(t, reg, "smartroute_mtls_connections_closed_total", "side", sideClient); got < 1 {
		t.Errorf("connections_closed_total{side=client} = %v, want >= 1", got)
	}
	if got := counter(t, reg, "smartroute_mtls_peer_refused_total", "reason", peerRevoked); got < 1 {
		t.Errorf("peer_refused_total{reason=revoked} = %v, want >= 1", got)
	}
	load.more(t, 10)
	load.check(t)
	freshLoad.check(t)
}

// TestRevocationListIsValidatedAndHotLoaded: a list that does not parse
// is refused, counted, and the last good one stays; Publish refuses a
// revoked certificate; Unrevoke and deleting the list undo revocations.
func TestRevocationListIsValidatedAndHotLoaded(t *testing.T) {
	e := newEnv(t)
	web := e.ca.Peer(t, []string{webName})
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", web)
	reg := prometheus.NewRegistry()
	s := e.store(WithRegisterer(reg))
	ready(t, s, "api", "web")
	srv := serveTracked(t, s, s.ServerConfig("api"))
	ctx := ctxT(t, 20*time.Second)

	rev, err := Revoke(ctx, e.cli, []Revocation{{Serial: strings.ToUpper(serialHex(web.Cert)), Reason: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, rev)
	if got := s.Revocations(); len(got) != 1 || got[0].Serial != serialHex(web.Cert) || got[0].RevokedAt.IsZero() {
		t.Fatalf("Revocations() = %+v", got)
	}
	if err := handshake(srv.addr, plainClient(t, e.ca, web)); err == nil {
		t.Fatal("a revoked client was accepted")
	}
	// Revoking again keeps one entry.
	if _, err := Revoke(ctx, e.cli, []Revocation{{Serial: serialHex(web.Cert), Reason: "again"}}); err != nil {
		t.Fatal(err)
	}
	// Publish refuses to write a revoked certificate.
	if _, err := Publish(ctx, e.cli, e.kr, "web2", web.CertPEM, web.KeyPEM); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Publish of a revoked certificate: %v, want ErrRevoked", err)
	}

	for _, bad := range []string{
		`garbage`,
		`{}`,
		`{"revoked": [{"serial": "zz", "reason": "x", "revoked_at": "2026-01-01T00:00:00Z"}]}`,
		`{"revoked": [{"serial": "01", "reason": "", "revoked_at": "2026-01-01T00:00:00Z"}]}`,
		`{"revoked": [{"serial": "01", "reason": "x"}]}`,
		`{"revoked": [{"spki_sha256": "short", "reason": "x", "revoked_at": "2026-01-01T00:00:00Z"}]}`,
		`{"revoked": [{"serial": "01", "spki_sha256": "` + SPKIPin(web.Cert) + `", "reason": "x", "revoked_at": "2026-01-01T00:00:00Z"}]}`,
		`{"revoked": [], "extra": 1}`,
	} {
		before := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonMalformed))
		waitRev(t, s, e.put(RevokedKey(""), bad))
		if rej := s.RevocationsRejected(); rej == nil || rej.Reason != ReasonMalformed {
			t.Errorf("list %s: RevocationsRejected() = %v, want malformed", bad, rej)
		}
		if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(ReasonMalformed)); got != before+1 {
			t.Errorf("list %s: rejected_total{malformed} = %v, want %v", bad, got, before+1)
		}
		if len(s.Revocations()) != 1 {
			t.Fatalf("list %s: the list in use changed to %+v", bad, s.Revocations())
		}
	}
	// Revoke refuses to build on a list it cannot read.
	if _, err := Revoke(ctx, e.cli, []Revocation{{Serial: "01", Reason: "x"}}); err == nil {
		t.Fatal("Revoke wrote over a malformed list")
	}
	// Deleting the list un-revokes everything, in every process alike.
	del, err := e.cli.Delete(ctx, RevokedKey(""))
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, del.Header.Revision)
	if s.Revocations() != nil || s.RevocationsRejected() != nil {
		t.Fatalf("after deletion: %+v, %v", s.Revocations(), s.RevocationsRejected())
	}
	if err := handshake(srv.addr, plainClient(t, e.ca, web)); err != nil {
		t.Fatalf("after the list's deletion: %v", err)
	}
	// Unrevoke removes one entry.
	if _, err := Revoke(ctx, e.cli, []Revocation{{Serial: serialHex(web.Cert), Reason: "x"}, {SPKISHA256: SPKIPin(e.ca.Cert), Reason: "y"}}); err != nil {
		t.Fatal(err)
	}
	rev, err = Unrevoke(ctx, e.cli, serialHex(web.Cert))
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, rev)
	if got := s.Revocations(); len(got) != 1 || got[0].SPKISHA256 != SPKIPin(e.ca.Cert) {
		t.Fatalf("after Unrevoke: %+v", got)
	}
	// The CA's key is still revoked: every certificate it signed is
	// refused, and the Store serves none of them any more.
	if err := handshake(srv.addr, plainClient(t, e.ca, web)); err == nil {
		t.Fatal("a leaf of a revoked CA was accepted")
	}
	if _, err := s.Certificate("api"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("the Store serves an identity from a revoked CA: %v", err)
	}
}

// BenchmarkRevocationReachesNewHandshakes measures the time from the
// revocation list's write (Revoke returning) to the first refused
// handshake of the revoked client certificate: the Store's watch delivery
// and reload. Run with
//
//	go test -run '^$' -bench RevocationReaches -benchtime 20x ./mtls/
func BenchmarkRevocationReachesNewHandshakes(b *testing.B) {
	e := newEnv(b)
	e.publish("api", e.ca.Peer(b, []string{apiName}))
	srvStore := e.store(WithIdentities("api"))
	ready(b, srvStore, "api")
	srv := serveTracked(b, srvStore, srvStore.ServerConfig("api"))
	ctx := context.Background()
	var total time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		leaf := e.ca.Peer(b, []string{"c.test"})
		cfg := plainClient(b, e.ca, leaf)
		if err := handshake(srv.addr, cfg); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := Revoke(ctx, e.cli, []Revocation{{Serial: serialHex(leaf.Cert), Reason: "bench"}}); err != nil {
			b.Fatal(err)
		}
		for handshake(srv.addr, cfg) == nil {
			if time.Since(start) > 10*time.Second {
				b.Fatal("not refused after 10s")
			}
		}
		total += time.Since(start)
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/revocation")
}
