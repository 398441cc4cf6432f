package mtls

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
)

// TestIdentityViewsNeverHoldTheKey: what the listing API returns marshals
// to JSON with names, serial, validity and fingerprints and without the
// private key; the certificate handed to handshakes prints and marshals
// its key as "[redacted]" and still works.
func TestIdentityViewsNeverHoldTheKey(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName, "127.0.0.1"}, withURI("spiffe://example.org/api"))
	e.publish("api", api)
	e.publish("web", e.ca.Peer(t, []string{webName}))
	s := e.store()
	ready(t, s, "api", "web")
	d := mustBytes(t, api.Key.(*ecdsa.PrivateKey))
	secrets := []string{new(big.Int).SetBytes(d).String(), base64.StdEncoding.EncodeToString(d), fmt.Sprintf("%x", d)}
	leaks := func(what, s string) {
		t.Helper()
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Fatalf("%s holds the private key", what)
			}
		}
	}

	ids, err := json.Marshal(s.Identities())
	if err != nil {
		t.Fatal(err)
	}
	leaks("json.Marshal(Identities())", string(ids))
	var back []Identity
	if err := json.Unmarshal(ids, &back); err != nil {
		t.Fatal(err)
	}
	info := back[0].Certificate
	if back[0].Name != "api" || info == nil || info.Serial != serialHex(api.Cert) || info.Subject != "CN="+apiName ||
		strings.Join(info.SANs(), ",") != apiName+",127.0.0.1,spiffe://example.org/api" ||
		info.SPKISHA256 != SPKIPin(api.Cert) || len(info.SHA256) != 64 || !info.NotAfter.Equal(api.Cert.NotAfter.UTC()) || !back[0].KeyChecked {
		t.Fatalf("the identity view lost facts: %s", ids)
	}

	cert, err := s.Certificate("api")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(cert)
	if err != nil {
		t.Fatal(err)
	}
	leaks("json.Marshal(Certificate())", string(raw))
	if !strings.Contains(string(raw), `"PrivateKey":"[redacted]"`) {
		t.Errorf("json.Marshal(Certificate()) = %s, want the key redacted", raw)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		leaks(verb+" of Certificate()", fmt.Sprintf(verb, cert))
		leaks(verb+" of *Certificate()", fmt.Sprintf(verb, *cert))
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("dump", "cert", cert, "key", cert.PrivateKey)
	leaks("a slog line", logs.String())

	// The redacted key still signs handshakes of both TLS versions.
	srv := serve(t, s.ServerConfig("api"))
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := s.ClientConfig("web", apiName)
		cfg.MinVersion, cfg.MaxVersion = v, v
		mustGet(t, httpClient(t, cfg, true), srv.addr)
	}
}

// TestCAExpiryMetric: smartroute_mtls_ca_expiry_seconds counts down to the
// expiry of each CA of the bundle in use, by serial.
func TestCAExpiryMetric(t *testing.T) {
	e := newEnv(t)
	ca2 := certgen.NewCA(t, "ca-2", certgen.ValidFor(72*time.Hour))
	e.publishCA(e.ca.PEM, ca2.PEM)
	reg := prometheus.NewRegistry()
	e.store(WithRegisterer(reg))
	if n := testutil.CollectAndCount(reg, "smartroute_mtls_ca_expiry_seconds"); n != 2 {
		t.Fatalf("%d CA expiry series, want 2", n)
	}
	for _, ca := range []*certgen.CA{e.ca, ca2} {
		got := counter(t, reg, "smartroute_mtls_ca_expiry_seconds", "serial", serialHex(ca.Cert))
		want := time.Until(ca.Cert.NotAfter).Seconds()
		if got < want-60 || got > want+1 {
			t.Errorf("ca_expiry_seconds{serial=%s} = %v, want about %v", serialHex(ca.Cert), got, want)
		}
	}
}

// TestDropDeletedStopsServing: by default a deleted identity stays in
// use; with WithDropDeleted it is no longer presented and the tracked
// connections that presented it are closed.
func TestDropDeletedStopsServing(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	keep := e.store()
	drop := e.store(WithDropDeleted(true))
	ready(t, keep, "api", "web")
	ready(t, drop, "api", "web")
	srv := serveTracked(t, drop, drop.ServerConfig("api"))
	held, err := tls.Dial("tcp", srv.addr, keep.ClientConfig("web", apiName))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := held.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := held.Read(buf); err != nil {
		t.Fatal(err)
	}

	del, err := e.cli.Txn(ctxT(t, 5*time.Second)).Then(clientv3.OpDelete(CertKey("", "api")), clientv3.OpDelete(KeyKey("", "api"))).Commit()
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, keep, del.Header.Revision)
	waitRev(t, drop, del.Header.Revision)
	if _, err := keep.Certificate("api"); err != nil {
		t.Fatalf("the default Store dropped a deleted identity: %v", err)
	}
	if _, err := drop.Certificate("api"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("WithDropDeleted: Certificate = %v, want ErrNoIdentity", err)
	}
	waitClosed(t, held, "a connection that presented the deleted identity")
	if _, err := tls.Dial("tcp", srv.addr, keep.ClientConfig("web", apiName)); err == nil {
		t.Fatal("the server still presents the deleted identity")
	}
}
