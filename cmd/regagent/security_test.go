package main

import (
	"crypto/tls"
	"net/http"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

func TestEtcdWithClientCertificateTLS(t *testing.T) {
	t.Parallel() // waits out TTLs and etcd auth; overlaps with the other slow tests
	dir := t.TempDir()
	ca := certgen.NewCA(t, "etcd-ca")
	srvCert, srvKey, caFile := certgen.WriteFiles(t, dir, "etcd", ca, ca.Peer(t, []string{"127.0.0.1", "localhost"}))
	agentCert, agentKey, _ := certgen.WriteFiles(t, dir, "agent", ca, ca.Client(t, "regagent"))
	c := etcdtest.Start(t, etcdtest.WithClientTLS(etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}))
	cli := c.Client(t)
	b := testbackend.MustHTTP(t)

	// Without a client certificate etcd refuses the agent, which says why
	// and keeps trying.
	refused := startAgent(t, nil, agentArgs(c, "--id", "no-cert", "--addr", b.Addr(), "--etcd-cacert", caFile)...)
	refusedAddr := refused.httpAddr(t)

	// The CA comes from the config file, the client certificate from the
	// environment: the three sources combine.
	conf := writeFile(t, "regagent.conf", "etcd-cacert "+caFile+"\n")
	env := map[string]string{"REGAGENT_ETCD_CERT": agentCert, "REGAGENT_ETCD_KEY": agentKey}
	a := startAgent(t, env, agentArgs(c, "--id", "with-cert", "--addr", b.Addr(), "--config", conf)...)
	waitHealthz(t, a.httpAddr(t), http.StatusOK, "registered")
	resp, err := getKey(t, cli, registry.Key(registry.DefaultPrefix, "api", "with-cert"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key of the agent with a client certificate: %v %v", err, resp)
	}

	waitFor(t, longWait, "the agent without a certificate to fail", func() bool {
		return metricValue(scrape(t, refusedAddr), "smartroute_regagent_register_failures_total") >= 1
	})
	if code, body := healthz(t, refusedAddr); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz of the agent without a certificate = %d %q, want 503", code, body)
	}
	resp, err = getKey(t, cli, registry.Key(registry.DefaultPrefix, "api", "no-cert"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the agent without a client certificate registered: %v %v", err, resp)
	}
}

// Not parallel: etcd hashes passwords with bcrypt, which is slow under
// -race; competing for the CPU it can overrun etcdtest's own timeouts.
func TestEtcdWithUserAndPassword(t *testing.T) {
	const password = "s3cret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: password}))
	// Authenticating costs etcd a bcrypt hash, slow under -race on a
	// loaded machine: dial timeouts here are generous.
	cfg := c.ClientConfig()
	cfg.DialTimeout = longWait
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	b := testbackend.MustHTTP(t)

	const dial = "--etcd-dial-timeout=15s"
	wrong := startAgent(t, nil, agentArgs(c, "--id", "wrong", "--addr", b.Addr(), "--etcd-user", "root:nope", dial)...)
	wrongAddr := wrong.httpAddr(t)

	a := startAgent(t, map[string]string{"REGAGENT_ETCD_PASSWORD": password},
		agentArgs(c, "--id", "right", "--addr", b.Addr(), "--etcd-user", "root", dial)...)
	waitHealthz(t, a.httpAddr(t), http.StatusOK, "registered")
	resp, err := getKey(t, cli, registry.Key(registry.DefaultPrefix, "api", "right"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key of the agent with the right password: %v %v", err, resp)
	}

	waitHealthz(t, wrongAddr, http.StatusServiceUnavailable, "authentication failed")
	resp, err = getKey(t, cli, registry.Key(registry.DefaultPrefix, "api", "wrong"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the agent with a wrong password registered: %v %v", err, resp)
	}
}

// TestCheckTypes registers an instance through each kind of local check
// against a real backend of that kind.
func TestCheckTypes(t *testing.T) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "service-ca")
	leaf := ca.Server(t, []string{"127.0.0.1", "api.internal"})
	_, _, caFile := certgen.WriteFiles(t, dir, "service", ca, leaf)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}, MinVersion: tls.VersionTLS12}

	c := etcdtest.Start(t)
	cli := c.Client(t)
	httpsB := testbackend.MustHTTP(t, testbackend.WithTLS(serverTLS))
	grpcB := testbackend.MustGRPC(t)
	grpcTLSB := testbackend.MustGRPC(t, testbackend.WithTLS(serverTLS))
	grpcB.SetServing("payments", true)

	tests := []struct {
		name string
		args []string
	}{
		{"https", []string{"--addr", httpsB.Addr(), "--check", "https", "--check-target", httpsB.URL() + "/healthz", "--check-cacert", caFile}},
		{"https-server-name", []string{"--addr", httpsB.Addr(), "--check", "https", "--check-cacert", caFile, "--check-server-name", "api.internal"}},
		{"tls", []string{"--addr", httpsB.Addr(), "--check", "tls", "--check-cacert", caFile}},
		{"grpc", []string{"--addr", grpcB.Addr(), "--check", "grpc"}},
		{"grpc-service", []string{"--addr", grpcB.Addr(), "--check", "grpc", "--check-grpc-service", "payments"}},
		{"grpc-tls", []string{"--addr", grpcTLSB.Addr(), "--check", "grpc", "--check-tls", "--check-cacert", caFile}},
		{"tcp", []string{"--addr", grpcB.Addr(), "--check", "tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := registry.Key(registry.DefaultPrefix, "api", tt.name)
			a := startAgent(t, nil, agentArgs(c, append([]string{"--id", tt.name}, tt.args...)...)...)
			waitHealthz(t, a.httpAddr(t), http.StatusOK, "registered as "+key)
			if code := a.stop(t); code != 0 {
				t.Errorf("exit code %d", code)
			}
			resp, err := getKey(t, cli, key)
			if err != nil || len(resp.Kvs) != 0 {
				t.Errorf("key left after shutdown: %v %v", err, resp)
			}
		})
	}

	// A check that cannot verify the service's certificate fails, and the
	// instance stays out.
	t.Run("https-unverified", func(t *testing.T) {
		a := startAgent(t, nil, agentArgs(c, "--id", "unverified", "--addr", httpsB.Addr(), "--check", "https")...)
		waitHealthz(t, a.httpAddr(t), http.StatusServiceUnavailable, "certificate")
	})
	t.Run("grpc-not-serving", func(t *testing.T) {
		grpcB.SetServing("billing", false)
		a := startAgent(t, nil, agentArgs(c, "--id", "not-serving", "--addr", grpcB.Addr(), "--check", "grpc", "--check-grpc-service", "billing")...)
		waitHealthz(t, a.httpAddr(t), http.StatusServiceUnavailable, "local check failing")
	})
}
