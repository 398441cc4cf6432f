package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/mtls"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// denied reports whether err is etcd's permission denied.
func denied(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || (err != nil && strings.Contains(err.Error(), "permission denied"))
}

// userFlags reach c as user.
func userFlags(c *etcdtest.Cluster, user, password string) []string {
	return append(etcdFlagsFor(c), "--etcd-user", user, "--etcd-password", password)
}

// TestEtcdRolesGiveEachComponentExactlyWhatItNeeds creates the roles with
// lbprobe etcd roles on an etcd with authentication on, gives each actor a
// user with exactly its role, and shows that every component works with
// that role and nothing more: a registrant registers but cannot write (or
// read) /certs/, so its credentials cannot mint identities; a reader
// resolves, loads the certificate store and lists it but writes nothing; a
// certificate admin publishes and revokes certificates but cannot touch
// the registry.
func TestEtcdRolesGiveEachComponentExactlyWhatItNeeds(t *testing.T) {
	const rootPW, pw = "root-secret", "user-secret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: rootPW}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// --dry-run prints the etcdctl commands and reaches nothing.
	res := lbprobe(t, "etcd", "roles", "--dry-run", "--etcd-endpoints", "127.0.0.1:1")
	if res.code != exitOK || !strings.Contains(res.stdout, "etcdctl role grant-permission smartroute-registrant --prefix=true readwrite /services/\n") ||
		!strings.Contains(res.stdout, "etcdctl role grant-permission smartroute-reader --prefix=true read /certs/\n") {
		t.Fatalf("roles --dry-run: %s", res)
	}
	// A user cannot create roles; root can, twice (idempotent), and a
	// permission added by hand is taken away again.
	c.AddUser(t, "nobody", pw)
	if res := lbprobe(t, append([]string{"etcd", "roles"}, userFlags(c, "nobody", pw)...)...); res.code != exitEtcd ||
		!strings.Contains(res.stderr, `etcd user "nobody" may not create roles; run it as root`) {
		t.Fatalf("roles as a user without rights: %s", res)
	}
	for range 2 {
		res := lbprobe(t, append([]string{"etcd", "roles"}, userFlags(c, "root", rootPW)...)...)
		if res.code != exitOK {
			t.Fatalf("roles as root: %s", res)
		}
		t.Logf("lbprobe etcd roles:\n%s", res.stdout)
	}
	root := c.Client(t)
	if _, err := root.RoleGrantPermission(ctx, "smartroute-reader", "/", "\x00", clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		t.Fatal(err)
	}
	if res := lbprobe(t, append([]string{"etcd", "roles"}, userFlags(c, "root", rootPW)...)...); res.code != exitOK {
		t.Fatalf("roles as root: %s", res)
	}
	if got, err := root.RoleGet(ctx, "smartroute-reader"); err != nil || len(got.Perm) != 2 {
		t.Fatalf("reader role after a stray grant and a rerun: %v, %v", got, err)
	}

	c.AddUser(t, "regagent", pw, "smartroute-registrant")
	c.AddUser(t, "client", pw, "smartroute-reader")
	c.AddUser(t, "admin", pw, "smartroute-cert-admin")
	c.AddUser(t, "service", pw, "smartroute-registrant", "smartroute-reader")
	reg, rd, adm, svc := c.UserClient(t, "regagent", pw), c.UserClient(t, "client", pw), c.UserClient(t, "admin", pw), c.UserClient(t, "service", pw)

	// Certificate admin: lbprobe certs put, revoke; nothing in /services/.
	kekFile := writeFile(t, "kek", []byte(strings.Repeat("5a", 32)))
	kekFlag := []string{"--kek", "kek-1=file:" + kekFile}
	ca := certgen.NewCA(t, "mesh-ca")
	api := ca.Peer(t, []string{"api.test"})
	lost := ca.Peer(t, []string{"lost.test"})
	put := func(user string, args ...string) result {
		return lbprobe(t, append(append(append([]string{"certs", "put"}, args...), kekFlag...), userFlags(c, user, pw)...)...)
	}
	if res := put("admin", "api", "--ca", writeFile(t, "ca.pem", ca.PEM), "--cert", writeFile(t, "api.crt", api.CertPEM), "--key", writeFile(t, "api.key", api.KeyPEM)); res.code != exitOK {
		t.Fatalf("certs put as certificate admin: %s", res)
	}
	if res := put("admin", "lost", "--cert", writeFile(t, "lost.crt", lost.CertPEM), "--key", writeFile(t, "lost.key", lost.KeyPEM)); res.code != exitOK {
		t.Fatalf("certs put as certificate admin: %s", res)
	}
	if res := lbprobe(t, append([]string{"certs", "revoke", "lost", "--reason", "decommissioned"}, userFlags(c, "admin", pw)...)...); res.code != exitOK {
		t.Fatalf("certs revoke as certificate admin: %s", res)
	}
	if _, err := adm.Put(ctx, "/services/api/rogue", `{"addr":"10.0.0.66:443"}`); !denied(err) {
		t.Errorf("certificate admin wrote /services/: %v", err)
	}

	// Registrant: registers; cannot write or read /certs/, so it cannot
	// publish a CA or an identity.
	r, err := registry.Register(ctx, reg, registry.Instance{Service: "api", Addr: "127.0.0.1:8443"}, registry.WithLogger(discard))
	if err != nil {
		t.Fatalf("registry.Register as registrant: %v", err)
	}
	defer r.Close(context.Background())
	rogue := certgen.NewCA(t, "rogue")
	if _, err := reg.Put(ctx, mtls.CAKey(""), string(rogue.PEM)); !denied(err) {
		t.Errorf("registrant wrote /certs/ca: %v", err)
	}
	if _, err := mtls.PublishCA(ctx, reg, rogue.PEM); !denied(err) {
		t.Errorf("registrant published a CA bundle: %v", err)
	}
	if _, err := reg.Get(ctx, mtls.KeyKey("", "api")); !denied(err) {
		t.Errorf("registrant read a sealed key: %v", err)
	}
	if res := put("regagent", "--ca", writeFile(t, "rogue.pem", rogue.PEM)); res.code == exitOK || !strings.Contains(res.stderr, "permission denied") {
		t.Errorf("certs put as registrant: %s", res)
	}

	// Reader: resolves, loads the store, lists it; writes nothing.
	rv, err := resolver.NewEtcd(rd, "api")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan resolver.State, 16)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rv.Watch(wctx, func(s resolver.State) { got <- s }) }()
	waitFor(t, 20*time.Second, "the reader's resolver to see the registered instance", func() bool {
		select {
		case s := <-got:
			return len(s.Endpoints) == 1 && s.Endpoints[0].Addr == "127.0.0.1:8443"
		default:
			return false
		}
	})
	wcancel()
	<-done
	kek, err := mtls.LoadKEKFile("kek-1", kekFile)
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := mtls.NewKeyring(kek)
	store, err := mtls.NewStore(ctx, rd, mtls.WithKeyring(kr), mtls.WithLogger(discard))
	if err != nil {
		t.Fatalf("mtls.NewStore as reader: %v", err)
	}
	defer store.Close()
	if err := store.Ready(ctx, "api"); err != nil {
		t.Fatalf("mtls Store as reader: %v", err)
	}
	if rv := store.Revocations(); len(rv) != 1 || rv[0].Serial != lost.Cert.SerialNumber.Text(16) {
		t.Errorf("reader's Store revocations: %+v", rv)
	}
	if res := lbprobe(t, append([]string{"certs", "list", "--json"}, userFlags(c, "client", pw)...)...); res.code != exitSome {
		t.Errorf("certs list as reader (api ok, lost revoked): %s", res)
	}
	for _, key := range []string{"/services/api/rogue", mtls.CAKey(""), mtls.RevokedKey("")} {
		if _, err := rd.Put(ctx, key, "x"); !denied(err) {
			t.Errorf("reader wrote %s: %v", key, err)
		}
		if _, err := rd.Delete(ctx, key); !denied(err) {
			t.Errorf("reader deleted %s: %v", key, err)
		}
	}
	if _, err := registry.Register(ctx, rd, registry.Instance{Service: "api", Addr: "127.0.0.1:9443"}, registry.WithLogger(discard)); !denied(err) {
		t.Errorf("registry.Register as reader: %v, want permission denied", err)
	}

	// A service holding both roles registers and loads its certificate.
	r2, err := registry.Register(ctx, svc, registry.Instance{Service: "api", Addr: "127.0.0.1:9443"}, registry.WithLogger(discard))
	if err != nil {
		t.Fatalf("registry.Register as registrant+reader: %v", err)
	}
	defer r2.Close(context.Background())
	s2, err := mtls.NewStore(ctx, svc, mtls.WithKeyring(kr), mtls.WithIdentities("api"), mtls.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Ready(ctx, "api"); err != nil {
		t.Fatal(err)
	}
}
