package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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
	if res.code != exitNone || !strings.Contains(res.stdout, "missing: no such identity") {
		t.Errorf("verify old nosuch: %s", res)
	}

	// put refuses what the Store would refuse.
	strCert := writeFile(t, "s.crt", stranger.CertPEM)
	strKey := writeFile(t, "s.key", stranger.KeyPEM)
	res = lbprobe(t, append(append([]string{"certs", "put", "stranger2", "--cert", strCert, "--key", strKey}, kekFlags...), etcd...)...)
	if res.code != exitNone || !strings.HasPrefix(res.stderr, "lbprobe: put stranger2: refused (untrusted): ") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("put untrusted: %s", res)
	}
	// A wrong KEK cannot open the keys: verify says so.
	wrongKEK := writeFile(t, "wrong", []byte(strings.Repeat("ab", 32)))
	res = lbprobe(t, append([]string{"certs", "verify", "web", "--kek-file", wrongKEK, "--kek-id", "kek-1"}, etcd...)...)
	if res.code != exitNone || !strings.Contains(res.stdout, "unseal") {
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

// kekFile writes a random KEK and returns its file and a keyring of it.
func kekFile(t *testing.T, id string) (string, *mtls.Keyring) {
	t.Helper()
	var raw [mtls.KEKSize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, id, []byte(hex.EncodeToString(raw[:])))
	kek, err := mtls.LoadKEKFile(id, path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		t.Fatal(err)
	}
	return path, kr
}

// statuses returns each identity's status in a list or verify report.
func statuses(t *testing.T, res result) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range decode[certsReport](t, res).Identities {
		out[id.Name] = id.Status
	}
	return out
}

// TestCertsListAndVerifyAgreeWithTheStore: the cases where list and verify
// used to disagree with each other and with the Store (a garbage key
// listed "sealed (not opened) … ok", trailing non-PEM data refused by list
// and accepted by verify, a leaf inside the CA bundle passing list and
// failing verify) now get one verdict: mtls's, the Store's.
func TestCertsListAndVerifyAgreeWithTheStore(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	etcd := etcdFlagsFor(c)
	kf, kr := kekFile(t, "kek-1")
	kek := []string{"--kek", "kek-1=" + kf}
	ca := certgen.NewCA(t, "mesh-ca")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mtls.PublishCA(ctx, cli, ca.PEM); err != nil {
		t.Fatal(err)
	}
	good := ca.Peer(t, []string{"good.test"})
	storeRaw(t, cli, kr, "good", good.CertPEM, good.KeyPEM)
	garbage := ca.Peer(t, []string{"garbage.test"})
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut(mtls.CertKey("", "garbage"), string(garbage.CertPEM)),
		clientv3.OpPut(mtls.KeyKey("", "garbage"), "\x8b\x02garbage that is no key"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	trailing := ca.Peer(t, []string{"trailing.test"})
	storeRaw(t, cli, kr, "trailing", append(bytes.Clone(trailing.CertPEM), "trailing bytes\n"...), trailing.KeyPEM)

	check := func(when string, want map[string]string) {
		t.Helper()
		s, err := mtls.NewStore(ctx, cli, mtls.WithKeyring(kr), mtls.WithLogger(discard))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fromStore := map[string]string{}
		for _, id := range s.Identities() {
			fromStore[id.Name] = "ok"
			if id.Certificate == nil {
				fromStore[id.Name] = string(id.Rejected.Reason)
			}
		}
		for _, args := range [][]string{
			{"certs", "list", "--json"},
			append([]string{"certs", "list", "--json"}, kek...),
			append([]string{"certs", "verify", "--json"}, kek...),
		} {
			res := lbprobe(t, append(args, etcd...)...)
			got := statuses(t, res)
			for name, w := range want {
				if got[name] != w || fromStore[name] != w {
					t.Errorf("%s: %v says %s is %q, the Store %q, want %q\n%s", when, args[:2], name, got[name], fromStore[name], w, res.stdout)
				}
			}
		}
	}
	check("garbage key, trailing data", map[string]string{"good": "ok", "garbage": "malformed", "trailing": "malformed"})

	// A leaf inside the CA bundle: the bundle is not_ca for everyone, and
	// no identity is trusted.
	if _, err := cli.Put(ctx, mtls.CAKey(""), string(ca.PEM)+string(good.CertPEM)); err != nil {
		t.Fatal(err)
	}
	check("leaf in the bundle", map[string]string{"good": "untrusted"})
	res := lbprobe(t, append([]string{"certs", "list", "--json"}, etcd...)...)
	rep := decode[certsReport](t, res)
	if res.code != exitNone || len(rep.CA) != 2 || rep.CA[0].Status != "not_ca" || rep.CA[0].Valid {
		t.Fatalf("list of a bundle holding a leaf: %s", res)
	}
}

// TestCertsSeveralKEKsAndReseal: the documented KEK rotation from the
// command line: keys sealed with the old KEK open with both KEKs given,
// reseal seals them with the new one (the first --kek), and afterwards the
// new KEK alone opens every key.
func TestCertsSeveralKEKsAndReseal(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	etcd := etcdFlagsFor(c)
	oldFile, oldKR := kekFile(t, "kek-old")
	newFile, _ := kekFile(t, "kek-new")
	ca := certgen.NewCA(t, "mesh-ca")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mtls.PublishCA(ctx, cli, ca.PEM); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"api", "web"} {
		l := ca.Peer(t, []string{name + ".test"})
		if _, err := mtls.Publish(ctx, cli, oldKR, name, l.CertPEM, l.KeyPEM); err != nil {
			t.Fatal(err)
		}
	}
	both := []string{"--kek", "kek-new=file:" + newFile, "--kek", "kek-old=" + oldFile}
	if res := lbprobe(t, append(append([]string{"certs", "verify"}, both...), etcd...)...); res.code != exitOK {
		t.Fatalf("verify with both KEKs: %s", res)
	}
	res := lbprobe(t, append(append([]string{"certs", "verify"}, "--kek", "kek-new="+newFile), etcd...)...)
	if res.code != exitNone || !strings.Contains(res.stdout, "unseal") {
		t.Fatalf("verify with the new KEK only, before reseal: %s", res)
	}
	// Reseal without the old KEK cannot open the keys: it says which.
	res = lbprobe(t, append(append([]string{"certs", "reseal"}, "--kek", "kek-new="+newFile), etcd...)...)
	if res.code != exitSome || !strings.Contains(res.stdout, "api (sealed with kek-old)") {
		t.Fatalf("reseal without the old KEK: %s", res)
	}
	res = lbprobe(t, append(append([]string{"certs", "reseal"}, both...), etcd...)...)
	if res.code != exitOK || !strings.Contains(res.stdout, "resealed 2 private keys under /certs/ with kek-new") {
		t.Fatalf("reseal: %s", res)
	}
	res = lbprobe(t, append(append([]string{"certs", "verify", "--json"}, "--kek", "kek-new=file:"+newFile), etcd...)...)
	if res.code != exitOK {
		t.Fatalf("verify with the new KEK after reseal: %s", res)
	}
	for _, id := range decode[certsReport](t, res).Identities {
		if id.KEKID != "kek-new" || !id.KeyChecked {
			t.Errorf("%s after reseal: %+v", id.Name, id)
		}
	}
	// A second reseal has nothing to do.
	if res := lbprobe(t, append(append([]string{"certs", "reseal", "--json"}, both...), etcd...)...); res.code != exitOK || decode[resealResult](t, res).Resealed != 0 {
		t.Fatalf("second reseal: %s", res)
	}
	// Usage: a --kek that names nothing usable.
	for _, bad := range [][]string{{"--kek", "no-equals"}, {"--kek", "id=env:"}, {"--kek", "k=" + writeFile(t, "short", []byte("short"))}} {
		if res := lbprobe(t, append(append([]string{"certs", "reseal"}, bad...), etcd...)...); res.code != exitUsage {
			t.Errorf("reseal %v: %s", bad, res)
		}
	}
	if res := lbprobe(t, append([]string{"certs", "reseal"}, etcd...)...); res.code != exitUsage {
		t.Errorf("reseal without a KEK: %s", res)
	}
}

// TestCertsHonourPins: with --trust-anchors or --ca-signers, list and
// verify judge the bundle as pinned services do, and put refuses to write
// a bundle they would refuse; a bundle signed offline by certs sign goes
// in with --ca-signature.
func TestCertsHonourPins(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	etcd := etcdFlagsFor(c)
	ca, rogue := certgen.NewCA(t, "mesh-ca"), certgen.NewCA(t, "rogue")
	anchors := writeFile(t, "anchors.pem", ca.PEM)
	caFile := writeFile(t, "ca.pem", ca.PEM)
	bothFile := writeFile(t, "both.pem", append(bytes.Clone(ca.PEM), rogue.PEM...))
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	signKey := writeFile(t, "sign.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	signPub := writeFile(t, "sign.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))

	// put under anchors: the good bundle goes in, the rogue one does not.
	if res := lbprobe(t, append([]string{"certs", "put", "--ca", caFile, "--trust-anchors", anchors}, etcd...)...); res.code != exitOK {
		t.Fatalf("put of the anchored bundle: %s", res)
	}
	res := lbprobe(t, append([]string{"certs", "put", "--ca", bothFile, "--trust-anchors", anchors}, etcd...)...)
	if res.code != exitNone || !strings.Contains(res.stderr, "refused (unpinned)") {
		t.Fatalf("put of a rogue bundle under anchors: %s", res)
	}
	// Written behind its back, list flags it under the pins and passes it
	// without (and says it is not pinned).
	if _, err := cli.Put(context.Background(), mtls.CAKey(""), string(ca.PEM)+string(rogue.PEM)); err != nil {
		t.Fatal(err)
	}
	res = lbprobe(t, append([]string{"certs", "list", "--json", "--trust-anchors", anchors}, etcd...)...)
	if rep := decode[certsReport](t, res); res.code != exitNone || !rep.Pinned || rep.CA[0].Status != "unpinned" {
		t.Fatalf("pinned list of a rogue bundle: %s", res)
	}
	res = lbprobe(t, append([]string{"certs", "list", "--json"}, etcd...)...)
	if rep := decode[certsReport](t, res); rep.Pinned || len(rep.CA) != 2 || !rep.CA[1].Valid {
		t.Fatalf("unpinned list of a rogue bundle: %s", res)
	}

	// Signed offline, published with its signature.
	res = lbprobe(t, "certs", "sign", "--ca", caFile, "--signing-key", signKey)
	if res.code != exitOK || !strings.Contains(res.stdout, `"format": "smartroute-ca-sig/v1"`) {
		t.Fatalf("sign: %s", res)
	}
	sig := writeFile(t, "ca.sig", []byte(res.stdout))
	if res := lbprobe(t, append([]string{"certs", "put", "--ca", bothFile, "--ca-signing-key", writeFile(t, "other.key", certgen.NewKeyPEM(t)), "--ca-signers", signPub}, etcd...)...); res.code != exitNone {
		t.Fatalf("put signed by another key under --ca-signers: %s", res)
	}
	if res := lbprobe(t, append([]string{"certs", "put", "--ca", caFile, "--ca-signature", sig, "--ca-signers", signPub}, etcd...)...); res.code != exitOK || !strings.Contains(res.stdout, "with its signature /certs/ca.sig") {
		t.Fatalf("put with an offline signature: %s", res)
	}
	res = lbprobe(t, append([]string{"certs", "list", "--json", "--ca-signers", signPub}, etcd...)...)
	if rep := decode[certsReport](t, res); len(rep.CA) != 1 || !rep.CA[0].Valid {
		t.Fatalf("list under --ca-signers of the signed bundle: %s", res)
	}
	if res := lbprobe(t, "certs", "sign", "--ca", caFile); res.code != exitUsage {
		t.Errorf("sign without a key: %s", res)
	}
}

// TestCertsRevoke: revoke by identity name; list and verify show the
// identity revoked, the revocation in the report; unrevoke undoes it.
func TestCertsRevoke(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	etcd := etcdFlagsFor(c)
	kf, kr := kekFile(t, "kek-1")
	ca := certgen.NewCA(t, "mesh-ca")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mtls.PublishCA(ctx, cli, ca.PEM); err != nil {
		t.Fatal(err)
	}
	web := ca.Peer(t, []string{"web.test"})
	if _, err := mtls.Publish(ctx, cli, kr, "web", web.CertPEM, web.KeyPEM); err != nil {
		t.Fatal(err)
	}
	res := lbprobe(t, append([]string{"certs", "revoke", "web", "--reason", "laptop stolen"}, etcd...)...)
	serial := web.Cert.SerialNumber.Text(16)
	if res.code != exitOK || !strings.Contains(res.stdout, "revoked serial "+serial+" of identity web in /certs/revoked") {
		t.Fatalf("revoke web: %s", res)
	}
	res = lbprobe(t, append([]string{"certs", "verify", "--json", "--kek", "kek-1=" + kf}, etcd...)...)
	rep := decode[certsReport](t, res)
	if res.code != exitNone || rep.Identities[0].Status != "revoked" || len(rep.Revoked) != 1 || rep.Revoked[0].Reason != "laptop stolen" {
		t.Fatalf("verify after revoke: %s", res)
	}
	for _, bad := range [][]string{{"certs", "revoke", "web"}, {"certs", "revoke", "--reason", "x"}, {"certs", "revoke", "web", "--serial", "01", "--reason", "x"}, {"certs", "revoke", "--serial", "zz", "--reason", "x"}} {
		if res := lbprobe(t, append(bad, etcd...)...); res.code != exitUsage {
			t.Errorf("%v: %s", bad, res)
		}
	}
	if res := lbprobe(t, append([]string{"certs", "unrevoke", serial}, etcd...)...); res.code != exitOK {
		t.Fatalf("unrevoke: %s", res)
	}
	if res := lbprobe(t, append([]string{"certs", "verify", "--kek", "kek-1=" + kf}, etcd...)...); res.code != exitOK {
		t.Fatalf("verify after unrevoke: %s", res)
	}
}
