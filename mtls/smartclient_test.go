package mtls

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// TestSmartClientDropsARevokedServerWithoutAFailedRequest wires the
// Store into the smart client as the README shows (DialTLS as the
// transport's DialTLSContext, the service name in the config). One of
// two backends has its certificate revoked under load: the client closes
// its pooled connections to it, refuses new handshakes with it, and its
// requests go to the other backend; not one request fails.
func TestSmartClientDropsARevokedServerWithoutAFailedRequest(t *testing.T) {
	e := newEnv(t)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store(WithIdentities("web"))
	ready(t, s, "web")
	backend := func(name string, l *certgen.Leaf) *testbackend.HTTP {
		return testbackend.MustHTTP(t, testbackend.WithName(name), testbackend.WithTLS(&tls.Config{
			Certificates: []tls.Certificate{l.TLSCertificate(t)}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: certgen.Pool(e.ca), MinVersion: tls.VersionTLS12}))
	}
	revoked := e.ca.Server(t, []string{apiName})
	a, b := backend("a", revoked), backend("b", e.ca.Server(t, []string{apiName}))
	tr := &http.Transport{DialTLSContext: s.DialTLS(s.ClientConfig("web", apiName), nil)}
	c, err := client.New("static:///"+a.Addr()+","+b.Addr(), client.WithTransport(tr), client.WithoutProbe(),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var ok, failed, toA atomic.Int64
	var lastErr atomic.Value
	send := func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+apiName+"/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			failed.Add(1)
			lastErr.Store(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get(testbackend.HeaderBackend) == "a" {
			toA.Add(1)
		}
		ok.Add(1)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				send()
			}
		}
	}()
	waitFor(t, 10*time.Second, "requests to reach both backends", func() bool { return a.Requests() > 5 && b.Requests() > 5 })

	rev, err := Revoke(ctx, e.cli, []Revocation{{Serial: serialHex(revoked.Cert), Reason: "decommissioned"}})
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, rev)
	before := a.Requests()
	base := ok.Load()
	waitFor(t, 10*time.Second, "requests to go on", func() bool { return ok.Load() > base+50 })
	close(stop)
	<-done
	if n := a.Requests() - before; n > 0 {
		// Requests already written on a pooled connection when it closed
		// may have reached it; none may after.
		t.Logf("%d requests reached the revoked backend after the revocation was loaded", n)
	}
	after := a.Requests()
	send()
	if a.Requests() != after {
		t.Fatal("a request reached the revoked backend")
	}
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed, e.g. %v", failed.Load(), ok.Load()+failed.Load(), lastErr.Load())
	}
	t.Logf("%d requests, 0 failed; %d served by the revoked backend before its revocation", ok.Load(), toA.Load())
}
