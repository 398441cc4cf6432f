package mtls

import (
	"bytes"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
)

func TestPublishWritesSealedPairInOneTransaction(t *testing.T) {
	e := newEnv(t)
	l := e.ca.Peer(t, []string{apiName})
	rev := e.publish("api", l)
	resp, err := e.cli.Get(ctxT(t, 5*time.Second), "/certs/api/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 {
		t.Fatalf("%d keys under /certs/api/, want 2", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if kv.ModRevision != rev {
			t.Fatalf("%s written at revision %d, want %d (one transaction)", kv.Key, kv.ModRevision, rev)
		}
		switch string(kv.Key) {
		case CertKey("", "api"):
			if !bytes.Equal(kv.Value, l.CertPEM) {
				t.Fatal("certificate altered")
			}
		case KeyKey("", "api"):
			if id, ok := SealedBy(kv.Value); !ok || id != "kek-1" {
				t.Fatalf("key not sealed with kek-1: %q %v", id, ok)
			}
			got, err := e.kr.Open(string(kv.Key), kv.Value)
			if err != nil || !bytes.Equal(got, l.KeyPEM) {
				t.Fatalf("sealed key does not open to the key: %v", err)
			}
		}
	}
}

func TestPublishRefusesBadInputAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	other := certgen.NewCA(t, "other")
	good := e.ca.Peer(t, []string{apiName})
	expired := e.ca.Peer(t, []string{apiName}, certgen.Expired())
	early := e.ca.Peer(t, []string{apiName}, certgen.NotYetValid())
	foreign := other.Peer(t, []string{apiName})
	cases := []struct {
		name      string
		crt, key  []byte
		reason    Reason
		opts      []Option
		sentinels []error
	}{
		{"garbage certificate", []byte("x"), good.KeyPEM, ReasonMalformed, nil, nil},
		{"garbage key", good.CertPEM, []byte("x"), ReasonMalformed, nil, nil},
		{"mismatch", good.CertPEM, certgen.NewKeyPEM(t), ReasonKeyMismatch, nil, nil},
		{"expired", expired.CertPEM, expired.KeyPEM, ReasonExpired, nil, nil},
		{"not yet valid", early.CertPEM, early.KeyPEM, ReasonNotYetValid, nil, nil},
		{"another CA", foreign.CertPEM, foreign.KeyPEM, ReasonUntrusted, nil, nil},
		{"expired by the clock", good.CertPEM, good.KeyPEM, ReasonExpired, []Option{WithClock(func() time.Time { return time.Now().Add(48 * time.Hour) })}, nil},
		{"no CA bundle under the prefix", good.CertPEM, good.KeyPEM, ReasonUntrusted, []Option{WithPrefix("/empty")}, []error{ErrNoCABundle}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Publish(ctxT(t, 5*time.Second), e.cli, e.kr, "api", tc.crt, tc.key, tc.opts...)
			var verr *ValidationError
			if !errors.As(err, &verr) || verr.Reason != tc.reason {
				t.Fatalf("err = %v, want a ValidationError with reason %s", err, tc.reason)
			}
			for _, s := range tc.sentinels {
				if !errors.Is(err, s) {
					t.Fatalf("err = %v, want it to wrap %v", err, s)
				}
			}
		})
	}
	if _, err := Publish(ctxT(t, 5*time.Second), e.cli, e.kr, "ca", good.CertPEM, good.KeyPEM); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("identity named ca: err = %v, want ErrInvalidName", err)
	}
	if _, err := Publish(ctxT(t, 5*time.Second), e.cli, e.kr, "a/b", good.CertPEM, good.KeyPEM); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("identity named a/b: err = %v, want ErrInvalidName", err)
	}
	resp, err := e.cli.Get(ctxT(t, 5*time.Second), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 1 {
		t.Fatalf("%d keys in etcd after refused publishes, want 1 (the CA bundle)", resp.Count)
	}
}

func TestPublishCARefusesBadBundles(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	for name, tc := range map[string]struct {
		bundle []byte
		reason Reason
	}{
		"garbage":          {[]byte("garbage"), ReasonMalformed},
		"leaf":             {e.ca.Peer(t, []string{"x"}).CertPEM, ReasonNotCA},
		"expired":          {certgen.NewCA(t, "old", certgen.Expired()).PEM, ReasonExpired},
		"orphans identity": {certgen.NewCA(t, "new").PEM, ReasonOrphaned},
	} {
		_, err := PublishCA(ctxT(t, 5*time.Second), e.cli, tc.bundle)
		var verr *ValidationError
		if !errors.As(err, &verr) || verr.Reason != tc.reason {
			t.Errorf("%s: err = %v, want reason %s", name, err, tc.reason)
		}
	}
	// Adding a CA keeps every identity and is accepted.
	if _, err := PublishCA(ctxT(t, 5*time.Second), e.cli, append(bytes.Clone(e.ca.PEM), certgen.NewCA(t, "new").PEM...)); err != nil {
		t.Fatalf("adding a CA: %v", err)
	}
}
