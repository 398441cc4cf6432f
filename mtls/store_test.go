package mtls

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
)

func TestStoreServesMutualTLSFromEtcd(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName})
	web := e.ca.Peer(t, []string{webName})
	e.publish("api", api)
	e.publish("web", web)

	s := e.store()
	ready(t, s, "api", "web")
	srv := serve(t, s.ServerConfig("api"))
	c := httpClient(t, s.ClientConfig("web", apiName), true)
	r := mustGet(t, c, srv.addr)
	if r.server != serialHex(api.Cert) || r.client != serialHex(web.Cert) {
		t.Fatalf("served %s/%s, want server %s client %s", r.server, r.client, serialHex(api.Cert), serialHex(web.Cert))
	}
	ids := s.Identities()
	if len(ids) != 2 || ids[0].Name != "api" || ids[0].KEKID != "kek-1" || ids[0].Certificate == nil {
		t.Fatalf("Identities() = %+v", ids)
	}
	if pool := s.CAPool(); pool == nil || !pool.Equal(certgen.Pool(e.ca)) {
		t.Fatal("CAPool is not the published bundle")
	}
}

// TestStoreRefusesBadUpdatesAndKeepsServing writes each kind of bad update
// straight to etcd (Publish would refuse them) and checks that it is
// refused for the right reason, counted, and that handshakes keep
// presenting the last good certificate.
func TestStoreRefusesBadUpdatesAndKeepsServing(t *testing.T) {
	e := newEnv(t)
	good := e.ca.Peer(t, []string{apiName})
	web := e.ca.Peer(t, []string{webName})
	e.publish("api", good)
	e.publish("web", web)
	reg := prometheus.NewRegistry()
	s := e.store(WithRegisterer(reg))
	ready(t, s, "api", "web")
	srv := serve(t, s.ServerConfig("api"))
	c := httpClient(t, s.ClientConfig("web", apiName), true)

	crtKey, keyKey := CertKey("", "api"), KeyKey("", "api")
	seal := func(kr *Keyring, etcdKey string, keyPEM []byte) string {
		v, err := kr.Seal(etcdKey, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	other := certgen.NewCA(t, "other")
	fresh := e.ca.Peer(t, []string{apiName})
	unknownKEK, _ := GenerateKEK("kek-unknown")
	unknownKR, _ := NewKeyring(unknownKEK)
	wrongBytes, _ := GenerateKEK("kek-1") // same ID, other bytes
	wrongKR, _ := NewKeyring(wrongBytes)
	tampered := []byte(seal(e.kr, keyKey, fresh.KeyPEM))
	tampered[len(tampered)-5] ^= 0x40
	legacy := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte("not really")})
	expired := e.ca.Peer(t, []string{apiName}, certgen.Expired())
	early := e.ca.Peer(t, []string{apiName}, certgen.NotYetValid())
	foreign := other.Peer(t, []string{apiName})
	short := e.ca.Peer(t, []string{apiName}, certgen.ValidFor(time.Minute))

	cases := []struct {
		name   string
		kvs    []string
		reason Reason
		at     string // the etcd key blamed
	}{
		// Only the certificate changes: it is paired with the key in etcd.
		{"certificate without its key", []string{crtKey, string(fresh.CertPEM)}, ReasonKeyMismatch, crtKey},
		{"garbage certificate", []string{crtKey, "not a certificate", keyKey, seal(e.kr, keyKey, fresh.KeyPEM)}, ReasonMalformed, crtKey},
		{"private key in the certificate field", []string{crtKey, string(fresh.KeyPEM), keyKey, seal(e.kr, keyKey, fresh.KeyPEM)}, ReasonMalformed, crtKey},
		{"garbage key", []string{crtKey, string(fresh.CertPEM), keyKey, "garbage"}, ReasonMalformed, keyKey},
		{"sealed garbage", []string{crtKey, string(fresh.CertPEM), keyKey, seal(e.kr, keyKey, []byte("garbage"))}, ReasonMalformed, keyKey},
		{"key of another certificate", []string{crtKey, string(fresh.CertPEM), keyKey, seal(e.kr, keyKey, web.KeyPEM)}, ReasonKeyMismatch, crtKey},
		{"expired", []string{crtKey, string(expired.CertPEM), keyKey, seal(e.kr, keyKey, expired.KeyPEM)}, ReasonExpired, crtKey},
		{"not yet valid", []string{crtKey, string(early.CertPEM), keyKey, seal(e.kr, keyKey, early.KeyPEM)}, ReasonNotYetValid, crtKey},
		{"another CA", []string{crtKey, string(foreign.CertPEM), keyKey, seal(e.kr, keyKey, foreign.KeyPEM)}, ReasonUntrusted, crtKey},
		{"plain key", []string{crtKey, string(fresh.CertPEM), keyKey, string(fresh.KeyPEM)}, ReasonPlainKey, keyKey},
		{"legacy encrypted PEM", []string{crtKey, string(fresh.CertPEM), keyKey, string(legacy)}, ReasonMalformed, keyKey},
		{"unknown KEK", []string{crtKey, string(fresh.CertPEM), keyKey, seal(unknownKR, keyKey, fresh.KeyPEM)}, ReasonUnseal, keyKey},
		{"wrong KEK bytes", []string{crtKey, string(fresh.CertPEM), keyKey, seal(wrongKR, keyKey, fresh.KeyPEM)}, ReasonUnseal, keyKey},
		{"tampered envelope", []string{crtKey, string(fresh.CertPEM), keyKey, string(tampered)}, ReasonUnseal, keyKey},
		{"envelope sealed for another identity", []string{crtKey, string(fresh.CertPEM), keyKey, seal(e.kr, KeyKey("", "web"), fresh.KeyPEM)}, ReasonUnseal, keyKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(tc.reason))
			rev := e.put(tc.kvs...)
			waitRev(t, s, rev)
			if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(tc.reason)); got != before+1 {
				t.Errorf("rejected_total{reason=%q} = %v, want %v", tc.reason, got, before+1)
			}
			id := identityNamed(s, "api")
			if id.Rejected == nil || id.Rejected.Reason != tc.reason || id.Rejected.Key != tc.at {
				t.Fatalf("Rejected = %v, want reason %s at %s", id.Rejected, tc.reason, tc.at)
			}
			if id.Certificate.Serial != serialHex(good.Cert) {
				t.Fatalf("identity in use changed to serial %s", id.Certificate.Serial)
			}
			if r := mustGet(t, c, srv.addr); r.server != serialHex(good.Cert) {
				t.Fatalf("server presents %s after a refused update, want the last good %s", r.server, serialHex(good.Cert))
			}
		})
	}

	// A certificate that is fine now but expired by the Store's clock.
	t.Run("expired by the store clock", func(t *testing.T) {
		late := e.store(WithClock(func() time.Time { return time.Now().Add(time.Hour) }), WithIdentities("api"))
		rev := e.put(crtKey, string(short.CertPEM), keyKey, seal(e.kr, keyKey, short.KeyPEM))
		waitRev(t, late, rev)
		if id := identityNamed(late, "api"); id.Rejected == nil || id.Rejected.Reason != ReasonExpired {
			t.Fatalf("Rejected = %v, want expired", id.Rejected)
		}
	})

	// A good update after all that is taken.
	rev := e.publish("api", fresh)
	waitRev(t, s, rev)
	if r := mustGet(t, c, srv.addr); r.server != serialHex(fresh.Cert) {
		t.Fatalf("server presents %s after a good update, want %s", r.server, serialHex(fresh.Cert))
	}
	if id := identityNamed(s, "api"); id.Rejected != nil {
		t.Fatalf("Rejected = %v after a good update, want nil", id.Rejected)
	}
	if got := counter(t, reg, "smartroute_mtls_reloads_total", "result", "rejected"); got < float64(len(cases)) {
		t.Fatalf("reloads_total{result=rejected} = %v, want at least %d", got, len(cases))
	}
	exp := counter(t, reg, "smartroute_mtls_cert_expiry_seconds", "identity", "api")
	if want := time.Until(fresh.Cert.NotAfter).Seconds(); exp < want-60 || exp > want+1 {
		t.Fatalf("cert_expiry_seconds{identity=api} = %v, want about %v", exp, want)
	}
}

func identityNamed(s *Store, name string) Identity {
	for _, id := range s.Identities() {
		if id.Name == name {
			return id
		}
	}
	return Identity{}
}

func TestStoreRefusesBadCABundles(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName})
	e.publish("api", api)
	reg := prometheus.NewRegistry()
	s := e.store(WithRegisterer(reg))
	ready(t, s, "api")
	other := certgen.NewCA(t, "other")
	leaf := e.ca.Peer(t, []string{"x"})
	cases := []struct {
		name   string
		bundle []byte
		reason Reason
	}{
		{"garbage", []byte("garbage"), ReasonMalformed},
		{"leaf in the bundle", append(bytes.Clone(e.ca.PEM), leaf.CertPEM...), ReasonNotCA},
		{"expired CA", certgen.NewCA(t, "old", certgen.Expired()).PEM, ReasonExpired},
		{"not yet valid CA", certgen.NewCA(t, "early", certgen.NotYetValid()).PEM, ReasonNotYetValid},
		{"other CA only", other.PEM, ReasonOrphaned},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(tc.reason))
			waitRev(t, s, e.put(CAKey(""), string(tc.bundle)))
			if got := counter(t, reg, "smartroute_mtls_rejected_total", "reason", string(tc.reason)); got != before+1 {
				t.Errorf("rejected_total{reason=%q} = %v, want %v", tc.reason, got, before+1)
			}
			if rej := s.CARejected(); rej == nil || rej.Reason != tc.reason {
				t.Fatalf("CARejected() = %v, want reason %s", rej, tc.reason)
			}
			if !s.CAPool().Equal(certgen.Pool(e.ca)) {
				t.Fatal("the CA bundle in use changed")
			}
		})
	}
	// The CA bundle deleted: the bundle in use stays.
	if _, err := e.cli.Delete(ctxT(t, 5*time.Second), CAKey("")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "CA deletion refused", func() bool {
		rej := s.CARejected()
		return rej != nil && rej.Reason == ReasonDeleted
	})
	if !s.CAPool().Equal(certgen.Pool(e.ca)) {
		t.Fatal("the CA bundle in use changed after its deletion")
	}
	// Written again, the bundle in use is no longer reported as refused.
	waitRev(t, s, e.publishCA(e.ca.PEM))
	if rej := s.CARejected(); rej != nil {
		t.Fatalf("CARejected() = %v after the bundle in use was written again", rej)
	}
}

func TestStoreRefusesPlainKeysUnlessAllowed(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName})
	if _, err := Publish(ctxT(t, 5*time.Second), e.cli, nil, "api", api.CertPEM, api.KeyPEM); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Publish without keyring: err = %v, want ErrNoKeyring", err)
	}
	rev, err := Publish(ctxT(t, 5*time.Second), e.cli, nil, "api", api.CertPEM, api.KeyPEM, WithAllowPlaintextKeys(true))
	if err != nil {
		t.Fatal(err)
	}
	strict := e.store()
	waitRev(t, strict, rev)
	if _, err := strict.Certificate("api"); !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), string(ReasonPlainKey)) {
		t.Fatalf("strict store: Certificate err = %v, want ErrNoIdentity naming plain_key", err)
	}
	lax := e.store(WithAllowPlaintextKeys(true), WithKeyring(nil))
	ready(t, lax, "api")
	if id := identityNamed(lax, "api"); id.KEKID != "" {
		t.Fatalf("KEKID = %q for a plain key", id.KEKID)
	}
}

func TestStoreLoadsLeafWrittenBeforeItsCA(t *testing.T) {
	e := newEnv(t)
	s := e.store()
	ca2 := certgen.NewCA(t, "ca-2")
	leaf := ca2.Peer(t, []string{apiName})
	// Bypass Publish, which would refuse it too.
	sealed, _ := e.kr.Seal(KeyKey("", "api"), leaf.KeyPEM)
	waitRev(t, s, e.put(CertKey("", "api"), string(leaf.CertPEM), KeyKey("", "api"), string(sealed)))
	if id := identityNamed(s, "api"); id.Rejected == nil || id.Rejected.Reason != ReasonUntrusted {
		t.Fatalf("Rejected = %v, want untrusted", id.Rejected)
	}
	waitRev(t, s, e.publishCA(e.ca.PEM, ca2.PEM))
	if _, err := s.Certificate("api"); err != nil {
		t.Fatalf("after its CA was added: %v", err)
	}
}

func TestReadyNamesWhatIsMissing(t *testing.T) {
	e := newEnv(t)
	s := e.store()
	ctx := ctxT(t, 200*time.Millisecond)
	err := s.Ready(ctx, "api")
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), `identity "api" (not in etcd)`) {
		t.Fatalf("Ready = %v, want ErrNotReady naming identity api", err)
	}
	s.Close()
	if err := s.WaitRevision(ctxT(t, time.Second), s.Revision()+100); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitRevision on a closed store = %v, want ErrClosed", err)
	}
}

// TestIdentitySurvivesDeletionUntilItsCAGoes checks that a deleted
// identity stays in use (stale beats empty) until a CA bundle no longer
// signs it.
func TestIdentitySurvivesDeletionUntilItsCAGoes(t *testing.T) {
	e := newEnv(t)
	api := e.ca.Peer(t, []string{apiName})
	e.publish("api", api)
	s := e.store()
	ready(t, s, "api")
	resp, err := e.cli.Delete(ctxT(t, 5*time.Second), "/certs/api/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, s, resp.Header.Revision)
	if id := identityNamed(s, "api"); id.Certificate == nil || id.Rejected == nil || id.Rejected.Reason != ReasonDeleted {
		t.Fatalf("after delete: %+v, want the material kept and the deletion refused", id)
	}
	ca2 := certgen.NewCA(t, "ca-2")
	waitRev(t, s, e.publishCA(ca2.PEM))
	if _, err := s.Certificate("api"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Certificate after its CA went: err = %v, want ErrNoIdentity", err)
	}
	if !s.CAPool().Equal(certgen.Pool(ca2)) {
		t.Fatal("new bundle not in use")
	}
}

// TestStoreKeepsMaterialWhenItsClientCloses: closing the etcd client ends
// the watch; the material stays and waiters learn why.
func TestStoreKeepsMaterialWhenItsClientCloses(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	cli := e.etcd.Client(t)
	s, err := NewStore(ctxT(t, 5*time.Second), cli, WithKeyring(e.kr), WithLogger(e.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ready(t, s, "api")
	cli.Close()
	err = s.WaitRevision(ctxT(t, 5*time.Second), s.Revision()+100)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "etcd client closed") {
		t.Fatalf("WaitRevision after the client closed = %v, want the client's closing", err)
	}
	if _, err := s.Certificate("api"); err != nil {
		t.Fatalf("material lost: %v", err)
	}
}
