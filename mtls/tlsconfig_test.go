package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
)

// TestServerConfigRefusesClientsWithoutAGoodCertificate: the server
// requires a client certificate signed by the current CA bundle.
func TestServerConfigRefusesClientsWithoutAGoodCertificate(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "api", "web")
	srv := serve(t, s.ServerConfig("api"))
	other := certgen.NewCA(t, "other")
	plain := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: certs, RootCAs: certgen.Pool(e.ca), ServerName: apiName, MinVersion: tls.VersionTLS12}
	}
	cases := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"store client with its identity", s.ClientConfig("web", apiName), true},
		{"store client without identity", s.ClientConfig("", apiName), false},
		{"no certificate", plain(), false},
		{"certificate from another CA", plain(other.Peer(t, []string{webName}).TLSCertificate(t)), false},
		{"expired certificate", plain(e.ca.Peer(t, []string{webName}, certgen.Expired()).TLSCertificate(t)), false},
		{"server-only certificate", plain(e.ca.Server(t, []string{webName}).TLSCertificate(t)), false},
		{"good certificate, not from the store", plain(e.ca.Client(t, webName).TLSCertificate(t)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := get(httpClient(t, tc.cfg, true), srv.addr)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestClientConfigRefusesServersItShouldNotTrust: the client verifies the
// server against the current CA bundle and the expected name.
func TestClientConfigRefusesServersItShouldNotTrust(t *testing.T) {
	e := newEnv(t)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "web")
	other := certgen.NewCA(t, "other")
	cases := []struct {
		name string
		leaf *certgen.Leaf
		ok   bool
	}{
		{"good server", e.ca.Server(t, []string{apiName}), true},
		{"server from another CA", other.Server(t, []string{apiName}), false},
		{"server certificate for another name", e.ca.Server(t, []string{"other.test"}), false},
		{"expired server certificate", e.ca.Server(t, []string{apiName}, certgen.Expired()), false},
		{"client-only certificate", e.ca.Client(t, apiName), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, &tls.Config{
				Certificates: []tls.Certificate{tc.leaf.TLSCertificate(t)},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    certgen.Pool(e.ca),
			})
			_, err := get(httpClient(t, s.ClientConfig("web", apiName), true), srv.addr)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}

	// A server that does not ask for a client certificate is verified
	// all the same.
	for _, tc := range []struct {
		leaf *certgen.Leaf
		ok   bool
	}{{e.ca.Server(t, []string{apiName}), true}, {other.Server(t, []string{apiName}), false}} {
		srv := serve(t, &tls.Config{Certificates: []tls.Certificate{tc.leaf.TLSCertificate(t)}})
		conn, err := tls.Dial("tcp", srv.addr, s.ClientConfig("web", apiName))
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tc.ok {
			t.Fatalf("server without client auth, certificate issued by %s: err = %v", tc.leaf.Cert.Issuer.CommonName, err)
		}
	}
}

// TestClientConfigWithoutServerNameVerifiesTheURLHost: with serverName ""
// the name verified is the one net/http sets from the URL.
func TestClientConfigWithoutServerNameVerifiesTheURLHost(t *testing.T) {
	e := newEnv(t)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "web")
	srv := serve(t, &tls.Config{
		Certificates: []tls.Certificate{e.ca.Server(t, []string{apiName}).TLSCertificate(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    certgen.Pool(e.ca),
	})
	tr := &http.Transport{
		TLSClientConfig: s.ClientConfig("web", ""),
		// Every host name leads to the test server.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	port := srv.addr[strings.LastIndex(srv.addr, ":"):]
	if _, err := get(c, apiName+port); err != nil {
		t.Fatalf("https://%s%s: %v", apiName, port, err)
	}
	if _, err := get(c, "other.test"+port); err == nil {
		t.Fatal("a server certificate for api.test was accepted for other.test")
	}
	if _, err := get(c, srv.addr); err == nil || !strings.Contains(err.Error(), "no server name") {
		t.Fatalf("an IP address without serverName: err = %v, want a missing server name", err)
	}
}

// TestServerConfigPicksIdentityBySNI: among several identities the server
// presents the one whose certificate names the SNI, else the first.
func TestServerConfigPicksIdentityBySNI(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName})
	admin := e.ca.Peer(t, []string{"admin.test"})
	e.publish("api", api)
	e.publish("admin", admin)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "api", "admin", "web")
	presented := func(cfg *tls.Config, sni string) string {
		t.Helper()
		srv := serve(t, cfg)
		conn, err := tls.Dial("tcp", srv.addr, &tls.Config{
			ServerName: sni,
			// The test only looks at the certificate presented.
			InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return s.Certificate("web")
			},
		})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		defer conn.Close()
		return serialHex(conn.ConnectionState().PeerCertificates[0])
	}
	both := s.ServerConfig("api", "admin")
	for sni, want := range map[string]*certgen.Leaf{apiName: api, "admin.test": admin, "unknown.test": api, "": api} {
		if got := presented(both, sni); got != serialHex(want.Cert) {
			t.Errorf("SNI %q: presented %s, want %s", sni, got, serialHex(want.Cert))
		}
	}
	if got := presented(s.ServerConfig("admin", "api"), "unknown.test"); got != serialHex(admin.Cert) {
		t.Errorf("unknown SNI with admin first: presented %s, want admin", got)
	}
	if got := presented(s.ServerConfig(), "admin.test"); got != serialHex(admin.Cert) {
		t.Errorf("ServerConfig() with every identity, SNI admin.test: presented %s, want admin", got)
	}
	// End to end with the store's client config.
	srv := serve(t, both)
	if r := mustGet(t, httpClient(t, s.ClientConfig("web", "admin.test"), true), srv.addr); r.server != serialHex(admin.Cert) {
		t.Fatalf("mTLS to admin.test reached %s", r.server)
	}
}

func TestConfigsEnforceTLSVersionAndSuites(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	s := e.store()
	ready(t, s, "api")
	for _, cfg := range []*tls.Config{s.ServerConfig("api"), s.ClientConfig("api", apiName)} {
		if cfg.MinVersion != tls.VersionTLS12 {
			t.Errorf("MinVersion = %x", cfg.MinVersion)
		}
		for _, id := range cfg.CipherSuites {
			if name := tls.CipherSuiteName(id); !strings.HasPrefix(name, "TLS_ECDHE_") {
				t.Errorf("suite %s is not ECDHE", name)
			}
		}
	}
	srv := serve(t, s.ServerConfig("api"))
	old := &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
	if conn, err := tls.Dial("tcp", srv.addr, old); err == nil {
		conn.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	rsaKex := &tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}
	if conn, err := tls.Dial("tcp", srv.addr, rsaKex); err == nil {
		conn.Close()
		t.Fatal("a handshake without ECDHE succeeded")
	}
}

// TestHandshakesFailWithoutMaterial: a Store with nothing loaded makes
// handshakes fail with clear errors rather than serve something else.
func TestHandshakesFailWithoutMaterial(t *testing.T) {
	e := newEnv(t)
	s := e.store()
	if _, err := s.Certificate("api"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Certificate = %v, want ErrNoIdentity", err)
	}
	srv := serve(t, s.ServerConfig("api"))
	conn, err := tls.Dial("tcp", srv.addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("handshake with a server without identity succeeded")
	}
	err = s.verifyPeer(s.cur.Load(), sideClient, "x", []*x509.Certificate{e.ca.Cert}, "x", x509.ExtKeyUsageServerAuth)
	if err == nil {
		t.Fatal("verifyPeer accepted a CA certificate for name x")
	}
}

// TestServerConfigNegotiatesHTTP2: net/http adds "h2" to the server's
// config; the per-handshake configs must keep offering it.
func TestServerConfigNegotiatesHTTP2(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "api", "web")
	srv := serve(t, s.ServerConfig("api"))
	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: s.ClientConfig("web", apiName), ForceAttemptHTTP2: h2}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("https://" + srv.addr + "/")
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		if want := map[bool]int{true: 2, false: 1}[h2]; resp.ProtoMajor != want {
			t.Fatalf("ForceAttemptHTTP2=%v: protocol %s, want HTTP/%d", h2, resp.Proto, want)
		}
	}
}

// TestServerConfigKeepsFieldsSetOnItsCopies: stacks such as grpc-go clone
// the config and set NextProtos on the clone; the handshake must use them.
func TestServerConfigKeepsFieldsSetOnItsCopies(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "api", "web")
	srvCfg := s.ServerConfig("api").Clone()
	srvCfg.NextProtos = []string{"x-proto"}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	cliCfg := s.ClientConfig("web", apiName)
	cliCfg.NextProtos = []string{"x-proto"}
	conn, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	proto := conn.ConnectionState().NegotiatedProtocol
	conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if proto != "x-proto" {
		t.Fatalf("negotiated %q, want x-proto", proto)
	}
}

// TestResumedSessionsAreVerifiedAgainstTheCurrentBundle: a client whose
// CA was removed from the bundle cannot come back by resuming a session.
func TestResumedSessionsAreVerifiedAgainstTheCurrentBundle(t *testing.T) {
	e := newEnv(t)
	ca1, ca2 := e.ca, certgen.NewCA(t, "ca-2")
	e.publishCA(ca1.PEM, ca2.PEM)
	e.publish("api", ca2.Peer(t, []string{apiName}))
	s := e.store()
	ready(t, s, "api")
	srv := serve(t, s.ServerConfig("api"))
	get := func(c *http.Client) (resumed bool, err error) {
		resp, err := c.Get("https://" + srv.addr + "/")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, errors.New(resp.Status)
		}
		return resp.TLS.DidResume, nil
	}
	// Clients outside the store, with a certificate from ca1 and a
	// session cache, one per TLS version.
	versions := []uint16{tls.VersionTLS12, tls.VersionTLS13}
	clients := make([]*http.Client, len(versions))
	for i, v := range versions {
		clients[i] = httpClient(t, &tls.Config{
			Certificates:       []tls.Certificate{ca1.Client(t, webName).TLSCertificate(t)},
			RootCAs:            certgen.Pool(ca1, ca2),
			ServerName:         apiName,
			ClientSessionCache: tls.NewLRUClientSessionCache(8),
			MinVersion:         v,
			MaxVersion:         v,
		}, true)
		if _, err := get(clients[i]); err != nil {
			t.Fatalf("TLS %x: first request: %v", v, err)
		}
		if resumed, err := get(clients[i]); err != nil || !resumed {
			t.Fatalf("TLS %x: second request resumed=%v err=%v; want a resumed session", v, resumed, err)
		}
	}
	// ca1 goes (the store's identity is from ca2): the sessions from ca1
	// certificates must not resume, and full handshakes fail.
	waitRev(t, s, e.publishCA(ca2.PEM))
	for i, v := range versions {
		if resumed, err := get(clients[i]); err == nil {
			t.Fatalf("TLS %x: a client from the removed CA was accepted (resumed=%v)", v, resumed)
		}
	}
}
