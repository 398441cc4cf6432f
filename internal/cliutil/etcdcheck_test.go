package cliutil

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
)

// flagsConfig builds a client configuration as a command does from its
// flags.
func flagsConfig(t *testing.T, e EtcdFlags) clientv3.Config {
	t.Helper()
	if e.DialTimeout == 0 {
		e.DialTimeout = 10 * 1e9
	}
	cfg, err := e.Config()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// expectCause runs CheckEtcd and wants it to fail with cause, its message
// holding every one of want.
func expectCause(t *testing.T, cfg clientv3.Config, acc Access, cause Cause, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := CheckEtcd(ctx, cfg, acc)
	if cli != nil {
		cli.Close()
	}
	var ee *EtcdError
	if !errors.As(err, &ee) {
		t.Fatalf("CheckEtcd: %v, want an EtcdError with cause %s", err, cause)
	}
	if ee.Cause != cause {
		t.Errorf("cause %s, want %s: %v", ee.Cause, cause, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func expectOK(t *testing.T, cfg clientv3.Config, acc Access) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := CheckEtcd(ctx, cfg, acc)
	if err != nil {
		t.Fatalf("CheckEtcd: %v", err)
	}
	cli.Close()
}

func TestCheckEtcdNamesUnreachableAtOnce(t *testing.T) {
	cfg := flagsConfig(t, EtcdFlags{Endpoints: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	start := time.Now()
	expectCause(t, cfg, Access{Key: "/services/api/", Prefix: true}, CauseUnreachable,
		"etcd unreachable", "http://127.0.0.1:1, http://127.0.0.1:2", "within 10s", "connection refused", "--etcd-endpoints")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a refused connection was reported after %v, not at once", d)
	}
}

func TestCheckEtcdNamesTLSFailures(t *testing.T) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "etcd-ca")
	other := certgen.NewCA(t, "other-ca")
	srvCert, srvKey, caFile := certgen.WriteFiles(t, dir, "etcd", ca, ca.Peer(t, []string{"127.0.0.1", "localhost"}))
	cliCert, cliKey, _ := certgen.WriteFiles(t, dir, "client", ca, ca.Client(t, "client"))
	strangerCert, strangerKey, otherCA := certgen.WriteFiles(t, t.TempDir(), "stranger", other, other.Client(t, "stranger"))
	secure := etcdtest.Start(t, etcdtest.WithClientTLS(etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}))
	plain := etcdtest.Start(t)
	hostPort := func(c *etcdtest.Cluster) []string {
		var out []string
		for _, ep := range c.Endpoints() {
			out = append(out, ep[strings.Index(ep, "://")+3:])
		}
		return out
	}
	acc := Access{Key: "/services/", Prefix: true}

	t.Run("ok", func(t *testing.T) {
		expectOK(t, flagsConfig(t, EtcdFlags{Endpoints: hostPort(secure), CAFile: caFile, CertFile: cliCert, KeyFile: cliKey}), acc)
	})
	t.Run("unknown authority", func(t *testing.T) {
		expectCause(t, flagsConfig(t, EtcdFlags{Endpoints: hostPort(secure), CAFile: otherCA, CertFile: cliCert, KeyFile: cliKey}), acc,
			CauseTLSUnknownAuthority, "signed by an unknown authority", "etcd-ca", "--etcd-cacert")
	})
	t.Run("no client certificate", func(t *testing.T) {
		expectCause(t, flagsConfig(t, EtcdFlags{Endpoints: hostPort(secure), CAFile: caFile}), acc,
			CauseTLSClientCertificate, "requires a client certificate and none was given", "--etcd-cert")
	})
	t.Run("client certificate of another CA", func(t *testing.T) {
		expectCause(t, flagsConfig(t, EtcdFlags{Endpoints: hostPort(secure), CAFile: caFile, CertFile: strangerCert, KeyFile: strangerKey}), acc,
			CauseTLSClientCertificate, "refused the client certificate", "trusted-ca-file")
	})
	t.Run("plain client, TLS server", func(t *testing.T) {
		var eps []string
		for _, hp := range hostPort(secure) {
			eps = append(eps, "http://"+hp)
		}
		expectCause(t, flagsConfig(t, EtcdFlags{Endpoints: eps}), acc,
			CauseTLSExpected, "expects TLS", "https://")
	})
	t.Run("TLS client, plain server", func(t *testing.T) {
		expectCause(t, flagsConfig(t, EtcdFlags{Endpoints: hostPort(plain), CAFile: caFile}), acc,
			CauseTLSUnsupported, "speaks plain HTTP, not TLS", "http://")
	})
}

func TestCheckEtcdNamesAuthAndPermissionFailures(t *testing.T) {
	const rootPW = "s3cret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: rootPW}))
	root := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := root.RoleAdd(ctx, "svc-reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleGrantPermission(ctx, "svc-reader", "/services/", clientv3.GetPrefixRangeEnd("/services/"), clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	c.AddUser(t, "reader", "pw", "svc-reader")
	eps := c.Endpoints()
	cfg := func(user, pw string) clientv3.Config {
		cfg := flagsConfig(t, EtcdFlags{Endpoints: eps, User: user, Password: pw, DialTimeout: 20 * 1e9})
		return cfg
	}
	read := Access{Key: "/services/api/", Prefix: true}

	t.Run("ok", func(t *testing.T) { expectOK(t, cfg("reader", "pw"), read) })
	t.Run("wrong password", func(t *testing.T) {
		expectCause(t, cfg("root", "nope"), read, CauseAuthFailed, `user "root"`, "wrong user name or password")
	})
	t.Run("no user", func(t *testing.T) {
		expectCause(t, cfg("", ""), read, CauseAuthRequired, "authentication on", "--etcd-user")
	})
	t.Run("read denied", func(t *testing.T) {
		expectCause(t, cfg("reader", "pw"), Access{Key: "/certs/", Prefix: true, GrantPrefix: "/certs/", Role: "smartroute-reader"},
			CausePermissionDenied, `etcd user "reader" (roles: svc-reader) may not read /certs/*`, "smartroute-reader", "etcdctl user grant-role reader smartroute-reader")
	})
	t.Run("write denied", func(t *testing.T) {
		expectCause(t, cfg("reader", "pw"), Access{Key: "/services/api/x", Write: true, GrantPrefix: "/services/", Role: "smartroute-registrant"},
			CausePermissionDenied, "may not write /services/api/x", "readwrite on /services/")
		// Nothing was written.
		resp, err := root.Get(ctx, "/services/api/x")
		if err != nil || len(resp.Kvs) != 0 {
			t.Errorf("the write check wrote: %v %v", err, resp)
		}
	})
}
