package mtls

import (
	"bytes"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
)

// TestInspectAgreesWithTheStore: for every kind of stored identity, good
// or broken, Inspect's verdict is the Store's (the same code judges
// both), with and without the keyring; without it only the opening of
// sealed keys is left out, never a check that can be made without it.
func TestInspectAgreesWithTheStore(t *testing.T) {
	e := newEnv(t)
	good := e.ca.Peer(t, []string{"good.test"})
	seal := func(name string, keyPEM []byte) string {
		v, err := e.kr.Seal(KeyKey("", name), keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	other := e.ca.Peer(t, []string{"other.test"})
	otherKR, _ := NewKeyring(mustKEK(t, "kek-9"))
	foreign, _ := otherKR.Seal(KeyKey("", "foreignkek"), other.KeyPEM)
	e.publish("good", good)
	type tc struct {
		crt, key    string
		want, noKey Reason // "" for ok
	}
	cases := map[string]tc{
		"good":         {string(good.CertPEM), seal("good", good.KeyPEM), "", ""},
		"garbagekey":   {string(other.CertPEM), "not a key at all", ReasonMalformed, ReasonMalformed},
		"truncatedenv": {string(other.CertPEM), seal("truncatedenv", other.KeyPEM)[:40], ReasonMalformed, ReasonMalformed},
		"trailing":     {string(other.CertPEM) + "trailing text, not PEM\n", seal("trailing", other.KeyPEM), ReasonMalformed, ReasonMalformed},
		"truncatedpem": {string(other.CertPEM) + "-----BEGIN CERTIFICATE-----\nMIIB", seal("truncatedpem", other.KeyPEM), ReasonMalformed, ReasonMalformed},
		"mismatch":     {string(other.CertPEM), seal("mismatch", certgen.NewKeyPEM(t)), ReasonKeyMismatch, ""},
		"expired":      {string(e.ca.Peer(t, []string{"x"}, certgen.Expired()).CertPEM), seal("expired", other.KeyPEM), ReasonKeyMismatch, ReasonExpired},
		"stranger":     {string(certgen.NewCA(t, "stranger").Peer(t, []string{"s"}).CertPEM), seal("stranger", other.KeyPEM), ReasonKeyMismatch, ReasonUntrusted},
		"plain":        {string(other.CertPEM), string(other.KeyPEM), ReasonPlainKey, ReasonPlainKey},
		"foreignkek":   {string(other.CertPEM), string(foreign), ReasonUnseal, ""},
		"lonely":       {string(other.CertPEM), "", ReasonIncomplete, ReasonIncomplete},
	}
	for name, c := range cases {
		if name == "good" {
			continue
		}
		kvs := []string{CertKey("", name), c.crt}
		if c.key != "" {
			kvs = append(kvs, KeyKey("", name), c.key)
		}
		e.put(kvs...)
	}
	s := e.store()
	storeVerdict := map[string]Reason{}
	for _, id := range s.Identities() {
		switch {
		case id.Certificate != nil:
			storeVerdict[id.Name] = ""
		case id.Rejected != nil:
			storeVerdict[id.Name] = id.Rejected.Reason
		}
	}
	for _, withKey := range []bool{true, false} {
		opts := []Option{}
		if withKey {
			opts = append(opts, WithKeyring(e.kr))
		}
		rep, err := Inspect(ctxT(t, 10*time.Second), e.cli, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Identities) != len(cases) || len(rep.CA) != 1 || rep.CARejected != nil {
			t.Fatalf("keyring=%v: report %+v", withKey, rep)
		}
		for _, id := range rep.Identities {
			got := Reason("")
			if id.Rejected != nil && id.Certificate == nil {
				got = id.Rejected.Reason
			}
			want := cases[id.Name].want
			if !withKey {
				want = cases[id.Name].noKey
			}
			if got != want {
				t.Errorf("keyring=%v: %s judged %q, want %q (%v)", withKey, id.Name, got, want, id.Rejected)
			}
			if withKey && got != storeVerdict[id.Name] {
				t.Errorf("%s: Inspect says %q, the Store %q", id.Name, got, storeVerdict[id.Name])
			}
			if id.Valid() && id.KeyChecked != withKey {
				t.Errorf("keyring=%v: %s KeyChecked=%v", withKey, id.Name, id.KeyChecked)
			}
		}
	}
}

// TestInspectJudgesTheBundleAsTheStore: a leaf inside the CA bundle makes
// the bundle not_ca for Inspect as for the Store, and every identity
// untrusted for both; under pins a rogue bundle is unpinned.
func TestInspectJudgesTheBundleAsTheStore(t *testing.T) {
	e := newEnv(t)
	leaf := e.ca.Peer(t, []string{"x"})
	ctx := ctxT(t, 10*time.Second)
	e.put(CAKey(""), string(e.ca.PEM)+string(leaf.CertPEM))
	sealed, _ := e.kr.Seal(KeyKey("", "api"), leaf.KeyPEM)
	e.put(CertKey("", "api"), string(leaf.CertPEM), KeyKey("", "api"), string(sealed))
	s := e.store()
	rep, err := Inspect(ctx, e.cli, WithKeyring(e.kr))
	if err != nil {
		t.Fatal(err)
	}
	if rep.CA != nil || rep.CARejected == nil || rep.CARejected.Reason != ReasonNotCA || len(rep.CAStored) != 2 {
		t.Fatalf("Inspect CA: %+v %v", rep.CA, rep.CARejected)
	}
	if rej := s.CARejected(); rej == nil || rej.Reason != ReasonNotCA {
		t.Fatalf("Store CA: %v", rej)
	}
	if rep.Identities[0].Rejected == nil || rep.Identities[0].Rejected.Reason != ReasonUntrusted {
		t.Fatalf("Inspect identity: %+v", rep.Identities[0])
	}
	if id := identityNamed(s, "api"); id.Rejected == nil || id.Rejected.Reason != ReasonUntrusted {
		t.Fatalf("Store identity: %+v", id)
	}

	rogue := certgen.NewCA(t, "rogue")
	e.put(CAKey(""), string(bytes.Join([][]byte{e.ca.PEM, rogue.PEM}, nil)))
	rep, err = Inspect(ctx, e.cli, WithTrustAnchors(e.ca.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Pinned || rep.CARejected == nil || rep.CARejected.Reason != ReasonUnpinned {
		t.Fatalf("pinned Inspect of a rogue bundle: %v", rep.CARejected)
	}
}

func mustKEK(t *testing.T, id string) KEK {
	t.Helper()
	k, err := GenerateKEK(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
