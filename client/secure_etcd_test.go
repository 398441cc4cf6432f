package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/mtls"
	"github.com/smartroute/smartroute/registry"
)

// The whole path against an etcd that requires client certificates, and
// one that requires a user and password: a registration, the etcd resolver
// routing a client to it, and the mTLS store loading an identity. (regagent
// and lbprobe have their own tests of both.)
func TestSecureEtcdEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "etcd-ca")
	srvCert, srvKey, caFile := certgen.WriteFiles(t, dir, "etcd", ca, ca.Peer(t, []string{"127.0.0.1", "localhost"}))
	for _, tc := range []struct {
		name string
		opt  etcdtest.Option
	}{
		{"client certificates", etcdtest.WithClientTLS(etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile})},
		{"user and password", etcdtest.WithAuth(etcdtest.Auth{RootPassword: "s3cret"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t, 60*time.Second)
			cluster := etcdtest.Start(t, tc.opt)
			cli := cluster.Client(t)

			b := testbackend.MustHTTP(t, testbackend.WithName("b0"))
			reg, err := registry.Register(ctx, cli, registry.Instance{Service: "api", Addr: b.Addr()}, registry.WithLogger(testlog.New(t)))
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close(context.Background())
			c := etcdClient(t, cli)
			if name, err := get(ctx, c, "http"); err != nil || name != "b0" {
				t.Fatalf("request through the etcd resolver: %q, %v", name, err)
			}

			kek, _ := mtls.GenerateKEK("k1")
			ring, _ := mtls.NewKeyring(kek)
			tlsCA := certgen.NewCA(t, "service CA")
			leaf := tlsCA.Server(t, []string{"api"})
			if _, err := mtls.PublishCA(ctx, cli, tlsCA.PEM); err != nil {
				t.Fatal(err)
			}
			if _, err := mtls.Publish(ctx, cli, ring, "api", leaf.CertPEM, leaf.KeyPEM); err != nil {
				t.Fatal(err)
			}
			store, err := mtls.NewStore(ctx, cli, mtls.WithKeyring(ring))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if err := store.Ready(ctx, "api"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
