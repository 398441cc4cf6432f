package main

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
)

func TestEtcdWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "etcd-ca")
	srvCert, srvKey, caFile := certgen.WriteFiles(t, dir, "etcd", ca, ca.Peer(t, []string{"127.0.0.1", "localhost"}))
	cliCert, cliKey, _ := certgen.WriteFiles(t, dir, "lbprobe", ca, ca.Client(t, "lbprobe"))
	c := etcdtest.Start(t, etcdtest.WithClientTLS(etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}))
	b := newFast(t, "b")
	register(t, c.Client(t), registry.Instance{Service: "api", ID: "b", Addr: b})
	base := []string{"endpoints", "etcd:///api", "--count", "1", "--json", "--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-cacert", caFile}

	// The client certificate from the environment, the CA from a flag.
	t.Setenv("LBPROBE_ETCD_CERT", cliCert)
	t.Setenv("LBPROBE_ETCD_KEY", cliKey)
	res := lbprobe(t, base...)
	if res.code != exitOK {
		t.Fatalf("%s", res)
	}
	if rep := decode[endpointsReport](t, res); len(rep.Endpoints) != 1 || rep.Endpoints[0].Addr != b {
		t.Errorf("endpoints %+v, want %s", rep.Endpoints, b)
	}

	// Without a client certificate etcd refuses the handshake.
	t.Setenv("LBPROBE_ETCD_CERT", "")
	t.Setenv("LBPROBE_ETCD_KEY", "")
	res = lbprobe(t, append(base, "--etcd-dial-timeout", "1s")...)
	if res.code != exitEtcd || strings.Count(res.stderr, "\n") != 1 ||
		!strings.HasPrefix(res.stderr, "lbprobe: etcd at https://") || !strings.Contains(res.stderr, "requires a client certificate and none was given") {
		t.Errorf("want exit 3 and one line naming the missing client certificate:\n%s", res)
	}
	// With --json, stdout carries the error and its cause.
	if doc := decode[cliutil.ErrorDoc](t, res); doc.Cause != cliutil.CauseTLSClientCertificate || doc.ExitCode != exitEtcd {
		t.Errorf("JSON error %+v", doc)
	}
}

func TestEtcdWithUserAndPassword(t *testing.T) {
	const password = "s3cret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: password}))
	// Authenticating costs etcd a bcrypt hash, slow under -race: dial
	// timeouts are generous.
	cfg := c.ClientConfig()
	cfg.DialTimeout = 20 * time.Second
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	b := newFast(t, "b")
	register(t, cli, registry.Instance{Service: "api", ID: "b", Addr: b})
	base := []string{"endpoints", "etcd:///api", "--count", "1", "--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-dial-timeout", "20s"}

	// The password from the environment, as operators should pass it.
	t.Setenv("LBPROBE_ETCD_PASSWORD", password)
	if res := lbprobe(t, append(base, "--etcd-user", "root")...); res.code != exitOK || !strings.Contains(res.stdout, b) {
		t.Fatalf("%s", res)
	}
	t.Setenv("LBPROBE_ETCD_PASSWORD", "")
	res := lbprobe(t, append(base, "--etcd-user", "root:nope")...)
	if res.code != exitEtcd || strings.Count(res.stderr, "\n") != 1 || !strings.Contains(res.stderr, `etcd refused user "root": authentication failed, wrong user name or password`) {
		t.Errorf("want exit 3 and one line saying authentication failed:\n%s", res)
	}
}

func TestEtcdUserPasswordForms(t *testing.T) {
	for _, tc := range []struct {
		user, password   string
		wantU, wantP     string
		wantUsageErrLike string
	}{
		{user: "root:pw", wantU: "root", wantP: "pw"},
		{user: "root", password: "pw", wantU: "root", wantP: "pw"},
		{user: "a:b", password: "pw", wantU: "a:b", wantP: "pw"},
		{password: "pw", wantUsageErrLike: "an etcd password is set but --etcd-user is not"},
		{user: "root", wantUsageErrLike: "--etcd-user root has no password"},
	} {
		f := etcdFlags{cliutil.EtcdFlags{Endpoints: listValue{"127.0.0.1:2379"}, User: tc.user, Password: tc.password, DialTimeout: durationValue(time.Second)}}
		cfg, err := f.config()
		if tc.wantUsageErrLike != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantUsageErrLike) {
				t.Errorf("%+v: err %v, want %q", tc, err, tc.wantUsageErrLike)
			}
			continue
		}
		if err != nil || cfg.Username != tc.wantU || cfg.Password != tc.wantP || cfg.Endpoints[0] != "http://127.0.0.1:2379" {
			t.Errorf("%+v: user %q password %q endpoints %v err %v", tc, cfg.Username, cfg.Password, cfg.Endpoints, err)
		}
	}
}
