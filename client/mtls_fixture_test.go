package client_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/mtls"
)

// mtlsFixture is a fresh etcd with a CA published to it and a keyring to
// seal keys with: where the tests publish the server identity "api" and the
// client identity "web".
type mtlsFixture struct {
	ctx  context.Context
	cli  *clientv3.Client
	ring *mtls.Keyring
	ca   *certgen.CA
}

func newMTLSFixture(t *testing.T) *mtlsFixture {
	t.Helper()
	f := &mtlsFixture{ctx: ctxFor(t, 60*time.Second), cli: etcdtest.Start(t).Client(t)}
	kek, err := mtls.GenerateKEK("test-kek")
	if err != nil {
		t.Fatal(err)
	}
	if f.ring, err = mtls.NewKeyring(kek); err != nil {
		t.Fatal(err)
	}
	f.ca = certgen.NewCA(t, "test CA")
	if _, err := mtls.PublishCA(f.ctx, f.cli, f.ca.PEM); err != nil {
		t.Fatal(err)
	}
	return f
}

// publish issues new leaves for "api" and "web" and publishes them.
func (f *mtlsFixture) publish(t *testing.T) {
	t.Helper()
	srv, cl := f.ca.Server(t, []string{"api"}), f.ca.Client(t, "web")
	if _, err := mtls.Publish(f.ctx, f.cli, f.ring, "api", srv.CertPEM, srv.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := mtls.Publish(f.ctx, f.cli, f.ring, "web", cl.CertPEM, cl.KeyPEM); err != nil {
		t.Fatal(err)
	}
}

// store returns a Store over the fixture, ready with both identities.
func (f *mtlsFixture) store(t *testing.T) *mtls.Store {
	t.Helper()
	store, err := mtls.NewStore(f.ctx, f.cli, mtls.WithKeyring(f.ring), mtls.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Ready(f.ctx, "api", "web"); err != nil {
		t.Fatal(err)
	}
	return store
}
