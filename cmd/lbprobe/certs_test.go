package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/mtls"
)

// storeRaw writes an identity to etcd without validation, as a broken
// deployment script might: the certificate as given, the key sealed.
func storeRaw(t *testing.T, cli *clientv3.Client, kr *mtls.Keyring, name string, certPEM, keyPEM []byte) {
	t.Helper()
	sealed, err := kr.Seal(mtls.KeyKey(mtls.DefaultPrefix, name), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Txn(ctx).Then(
		clientv3.OpPut(mtls.CertKey(mtls.DefaultPrefix, name), string(certPEM)),
		clientv3.OpPut(mtls.KeyKey(mtls.DefaultPrefix, name), string(sealed)),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCertsPutVerifyListRoundTrip(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	etcd := etcdFlagsFor(c)

	var raw [mtls.KEKSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	kekText := hex.EncodeToString(raw[:]) + "\n"
	kekFile := writeFile(t, "kek", []byte(kekText))
	kek, err := mtls.ParseKEK("kek-1", []byte(kekText))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		t.Fatal(err)
	}
	kekFlags := []string{"--kek-file", kekFile, "--kek-id", "kek-1"}

	ca := certgen.NewCA(t, "mesh-ca")
	web := ca.Peer(t, []string{"web.mesh.test", "127.0.0.1"})
	caFile := writeFile(t, "ca.pem", ca.PEM)
	webCert := writeFile(t, "web.crt", web.CertPEM)
	webKey := writeFile(t, "web.key", web.KeyPEM)

	// put: the CA bundle, then the identity sealed with the KEK.
	res := lbprobe(t, append(append([]string{"certs", "put", "web", "--ca", caFile, "--cert", webCert, "--key", webKey}, kekFlags...), etcd...)...)
	if res.code != exitOK {
		t.Fatalf("put: %s", res)
	}
	if !strings.Contains(res.stdout, "published /certs/ca at revision ") ||
		!strings.Contains(res.stdout, "published /certs/web/tls.crt and /certs/web/tls.key (key sealed with kek-1) at revision ") {
		t.Errorf("put output:\n%s", res.stdout)
	}
	got, err := cli.Get(context.Background(), mtls.KeyKey("", "web"))
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("stored key: %v", err)
	}
	if id, ok := mtls.SealedBy(got.Kvs[0].Value); !ok || id != "kek-1" || strings.Contains(string(got.Kvs[0].Value), "PRIVATE KEY") {
		t.Fatalf("the key in etcd is not sealed with kek-1")
	}

	// verify: the mtls Store accepts it.
	res = lbprobe(t, append(append([]string{"certs", "verify", "web", "--json"}, kekFlags...), etcd...)...)
	if res.code != exitOK {
		t.Fatalf("verify: %s", res)
	}
	vr := decode[certsReport](t, res)
	if len(vr.Identities) != 1 || !vr.Identities[0].Valid || vr.Identities[0].KEKID != "kek-1" || vr.Identities[0].Subject != "CN=web.mesh.test" || len(vr.CA) != 1 {
		t.Fatalf("verify report %+v", vr)
	}

	// list without a KEK: the certificate checks pass, the key is not
	// opened.
	res = lbprobe(t, append([]string{"certs", "list"}, etcd...)...)
	if res.code != exitOK {
		t.Fatalf("list: %s", res)
	}
	if !strings.Contains(res.stdout, "sealed:kek-1 (not opened)") {
		t.Errorf("list without a KEK:\n%s", res.stdout)
	}
	r := cells(t, res.stdout, "web")
	if r["SANS"] != "web.mesh.test,127.0.0.1" || r["ISSUER"] != "CN=mesh-ca,O=smartroute tests" || r["DAYS"] != "0" || r["STATUS"] != "ok" {
		t.Errorf("web row %q\n%s", r, res.stdout)
	}

	// Broken identities written behind Publish's back: expired, a key that
	// belongs to another certificate, one from another CA, a certificate
	// without its key.
	old := ca.Peer(t, []string{"old.mesh.test"}, certgen.Expired())
	storeRaw(t, cli, kr, "old", old.CertPEM, old.KeyPEM)
	mixed := ca.Peer(t, []string{"mixed.mesh.test"})
	storeRaw(t, cli, kr, "mixed", mixed.CertPEM, certgen.NewKeyPEM(t))
	stranger := certgen.NewCA(t, "other-ca").Peer(t, []string{"stranger.mesh.test"})
	storeRaw(t, cli, kr, "stranger", stranger.CertPEM, stranger.KeyPEM)
	if _, err := cli.Put(context.Background(), mtls.CertKey("", "lonely"), string(mixed.CertPEM)); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"web": "ok", "old": "expired", "mixed": "key_mismatch", "stranger": "untrusted", "lonely": "incomplete"}
	res = lbprobe(t, append(append([]string{"certs", "list", "--json"}, kekFlags...), etcd...)...)
	if res.code != exitSome {
		t.Fatalf("list with broken identities: exit %d, want 1\n%s", res.code, res)
	}
	lr := decode[certsReport](t, res)
	if len(lr.Identities) != len(want) {
		t.Fatalf("list: %d identities, want %d\n%s", len(lr.Identities), len(want), res.stdout)
	}
	for _, id := range lr.Identities {
		if id.Status != want[id.Name] || id.Valid != (want[id.Name] == "ok") {
			t.Errorf("list %s: status %q valid %v (%s), want %s", id.Name, id.Status, id.Valid, id.Error, want[id.Name])
		}
	}
	res = lbprobe(t, append(append([]string{"certs", "list"}, kekFlags...), etcd...)...)
	t.Logf("certs list:\n%s", res.stdout)
	for name, status := range want {
		if r := cells(t, res.stdout, name); !strings.HasPrefix(r["STATUS"], status) {
			t.Errorf("table row of %s %q, want status %s", name, r, status)
		}
	}

	// verify agrees: the Store refuses the same ones, for the same reasons.
	res = lbprobe(t, append(append([]string{"certs", "verify", "--json"}, kekFlags...), etcd...)...)
	if res.code != exitSome {
		t.Fatalf("verify with broken identities: exit %d, want 1\n%s", res.code, res)
	}
	for _, id := range decode[certsReport](t, res).Identities {
		if id.Status != want[id.Name] {
			t.Errorf("verify %s: %q (%s), want %s", id.Name, id.Status, id.Error, want[id.Name])
		}
	}
	// Only the broken ones named: none valid.
	res = lbprobe(t, append(append([]string{"certs", "verify", "old", "nosuch"}, kekFlags...), etcd...)...)
	if res.code != exitFailure || !strings.Contains(res.stdout, "missing: no such identity") {
		t.Errorf("verify old nosuch: %s", res)
	}

	// put refuses what the Store would refuse.
	strCert := writeFile(t, "s.crt", stranger.CertPEM)
	strKey := writeFile(t, "s.key", stranger.KeyPEM)
	res = lbprobe(t, append(append([]string{"certs", "put", "stranger2", "--cert", strCert, "--key", strKey}, kekFlags...), etcd...)...)
	if res.code != exitFailure || !strings.HasPrefix(res.stderr, "lbprobe: put stranger2: refused (untrusted): ") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("put untrusted: %s", res)
	}
	// A wrong KEK cannot open the keys: verify says so.
	wrongKEK := writeFile(t, "wrong", []byte(strings.Repeat("ab", 32)))
	res = lbprobe(t, append([]string{"certs", "verify", "web", "--kek-file", wrongKEK, "--kek-id", "kek-1"}, etcd...)...)
	if res.code != exitFailure || !strings.Contains(res.stdout, "unseal") {
		t.Errorf("verify with the wrong KEK: %s", res)
	}
}

// certs list judges a CA bundle as the Store does: anything but
// certificates in it (here a private key appended by mistake) makes it
// malformed, not "ok".
func TestCertsListRefusesABundleWithMoreThanCertificates(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ca := certgen.NewCA(t, "mesh-ca")
	bundle := append(append([]byte{}, ca.PEM...), certgen.NewKeyPEM(t)...)
	if _, err := cli.Put(context.Background(), mtls.CAKey(""), string(bundle)); err != nil {
		t.Fatal(err)
	}
	res := lbprobe(t, append([]string{"certs", "list", "--json"}, etcdFlagsFor(c)...)...)
	if res.code == exitOK {
		t.Fatalf("list of a malformed bundle exited 0: %s", res)
	}
	rep := decode[certsReport](t, res)
	if len(rep.CA) != 1 || rep.CA[0].Status != string(mtls.ReasonMalformed) || rep.CA[0].Valid {
		t.Fatalf("CA rows %+v, want one malformed row", rep.CA)
	}
}
