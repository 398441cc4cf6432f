package client_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/mtls"
)

// getTLS sends GET https://api/ and returns the backend's name, the Host
// it saw and the server name the client's TLS handshake asked for and
// verified.
func getTLS(ctx context.Context, c *client.Client) (name, host, serverName string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://api/", nil)
	if err != nil {
		return "", "", "", err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return "", "", "", err
	}
	resp.Body.Close()
	if resp.TLS != nil {
		serverName = resp.TLS.ServerName
	}
	return resp.Header.Get(testbackend.HeaderBackend), resp.Header.Get(testbackend.HeaderRequestHost), serverName, nil
}

// Over HTTPS only the dial target changes: the Host header and the TLS
// server name stay the service's, so a certificate for "api" verifies and
// one for another name does not.
func TestHTTPSKeepsTheServiceNameForHostAndVerification(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	ca := certgen.NewCA(t, "test CA")
	good := ca.Server(t, []string{"api"}).TLSCertificate(t)
	wrong := ca.Server(t, []string{"other"}).TLSCertificate(t)
	serve := func(name string, cert tls.Certificate) *testbackend.HTTP {
		return testbackend.MustHTTP(t, testbackend.WithName(name),
			testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certgen.Pool(ca), MinVersion: tls.VersionTLS12}}

	a, b := serve("a", good), serve("b", good)
	// Round robin, so that both backends take requests whatever their
	// latencies on a busy machine: the test is about names, not choice.
	c := staticClient(t, endpointsOf(a.Addr(), b.Addr()), fastProbe(), client.WithTransport(tr), client.WithPolicy(client.RoundRobin))
	waitHealthy(t, c, a, b)
	// 20 requests, and on until both backends answered (a probe may call
	// one unhealthy for a moment on a loaded machine): each answer over
	// TLS verified for "api", with Host "api".
	seen := map[string]int{}
	for n := 0; n < 20 || seen["a"] == 0 || seen["b"] == 0; n++ {
		if n == 1000 {
			t.Fatalf("requests reached %v after %d requests, want both backends", seen, n)
		}
		name, host, serverName, err := getTLS(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if host != "api" || serverName != "api" {
			t.Fatalf("backend %s saw Host %q over TLS for server name %q, want the service name for both", name, host, serverName)
		}
		seen[name]++
	}

	bad := serve("bad", wrong)
	c2 := staticClient(t, endpointsOf(bad.Addr()), client.WithoutProbe(), client.WithTransport(tr))
	_, _, _, err := getTLS(ctx, c2)
	if err == nil || !strings.Contains(err.Error(), "certificate is valid for other, not api") {
		t.Fatalf("err %v, want the server certificate refused for the service name", err)
	}
}

// Certificates rotated in etcd while traffic flows through the smart
// client over mTLS: no request fails; a bad certificate pushed under load
// is refused and costs nothing either.
func TestFaultCertificateRotationUnderLoad(t *testing.T) {
	f := newMTLSFixture(t)
	f.publish(t)
	store := f.store(t)

	var bs []*testbackend.HTTP
	for _, name := range []string{"b0", "b1", "b2"} {
		bs = append(bs, testbackend.MustHTTP(t, testbackend.WithName(name), testbackend.WithLatency(time.Millisecond),
			testbackend.WithTLS(store.ServerConfig("api"))))
	}
	// A transport that keeps no idle connection, so that every request
	// makes a new handshake with the material of the moment.
	tr := &http.Transport{TLSClientConfig: store.ClientConfig("web", "api"), DisableKeepAlives: true}
	c := staticClient(t, endpointsOf(addrs(bs)...), fastProbe(), client.WithTransport(tr))

	tl := newTally()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			name, _, _, err := getTLS(f.ctx, c)
			tl.add(name, err)
		}
	}()
	waitRequests := func(n int) {
		t.Helper()
		tl.mu.Lock()
		start := tl.total
		tl.mu.Unlock()
		waitFor(t, readyTimeout, "requests to flow", func() bool {
			tl.mu.Lock()
			defer tl.mu.Unlock()
			return tl.total >= start+n
		})
	}
	waitRequests(20)
	for range 3 {
		f.publish(t)
		waitRequests(20)
	}
	// A bad certificate: an expired leaf for "api".
	expired := f.ca.Server(t, []string{"api"}, certgen.Expired())
	if _, err := mtls.Publish(f.ctx, f.cli, f.ring, "api", expired.CertPEM, expired.KeyPEM); err == nil {
		t.Log("Publish accepted an expired certificate; the store must refuse it")
	}
	waitRequests(20)
	close(stop)
	<-done
	if tl.failed > 0 {
		t.Fatalf("requests failed during rotation: %v", tl)
	}
	t.Logf("%d requests over new mTLS connections during 3 rotations and a bad push: %v", tl.total, tl)
}

// With WithMaxConnectionAge, kept-alive connections are replaced once they
// are old: a rotated server certificate reaches a client that never stops
// sending. Without it, the first connection would serve for ever.
func TestMaxConnectionAgeMakesLongLivedConnectionsRehandshake(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	ca := certgen.NewCA(t, "test CA")
	var current atomic.Pointer[tls.Certificate]
	first := ca.Server(t, []string{"api"}).TLSCertificate(t)
	current.Store(&first)
	b := testbackend.MustHTTP(t, testbackend.WithName("b0"), testbackend.WithTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil },
	}))
	serial := func(c *client.Client) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // so that the connection is reused
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	newClient := func(opts ...client.Option) *client.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certgen.Pool(ca), MinVersion: tls.VersionTLS12}}
		return staticClient(t, endpointsOf(b.Addr()), append(opts, client.WithoutProbe(), client.WithTransport(tr))...)
	}
	// The maximum age is long enough that the connection is surely still
	// young at the second request on a loaded machine (the two requests
	// are a few milliseconds apart; the certificate is made beforehand).
	const age = time.Second
	second := ca.Server(t, []string{"api"}).TLSCertificate(t)
	aged, kept := newClient(client.WithMaxConnectionAge(age)), newClient()
	connected := time.Now()
	old := serial(aged)
	if serial(kept) != old {
		t.Fatal("both clients should see the first certificate")
	}

	current.Store(&second)
	start := time.Now()
	if serial(aged) != old {
		t.Fatalf("a kept-alive connection %v old, younger than the maximum age %v, should still show the first certificate",
			time.Since(connected).Round(time.Millisecond), age)
	}
	for serial(aged) == old {
		if time.Since(start) > 20*age {
			t.Fatalf("the connection was not replaced within %v", 20*age)
		}
	}
	t.Logf("new certificate seen %v after the rotation (max age %v)", time.Since(start).Round(time.Millisecond), age)
	if serial(kept) != old {
		t.Fatal("without a maximum age, the kept-alive connection should still show the first certificate")
	}
}
