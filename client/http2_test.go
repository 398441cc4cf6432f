package client_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// The README's mTLS set-up passes a transport with its own TLS config,
// which net/http keeps on HTTP/1.1 unless told otherwise: the client
// attempts HTTP/2 all the same (one multiplexed connection per endpoint),
// and WithoutHTTP2 keeps it on HTTP/1.1.
func TestHTTP2IsAttemptedWithTheMTLSStoresConfig(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	f := newMTLSFixture(t)
	f.publish(t)
	store := f.store(t)
	// A backend that offers HTTP/2, as "listen 443 ssl http2" does.
	srvCfg := store.ServerConfig("api")
	srvCfg.NextProtos = []string{"h2", "http/1.1"}
	b := testbackend.MustHTTP(t, testbackend.WithName("b0"), testbackend.WithTLS(srvCfg))
	for _, tc := range []struct {
		name  string
		opts  []client.Option
		major int
	}{
		{"default", nil, 2},
		{"WithoutHTTP2", []client.Option{client.WithoutHTTP2()}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: store.ClientConfig("web", "api")}
			opts := append([]client.Option{client.WithoutProbe(), client.WithTransport(tr)}, tc.opts...)
			c := staticClient(t, endpointsOf(b.Addr()), opts...)
			for range 3 {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://api/", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != tc.major {
					t.Fatalf("answered over %s, want HTTP/%d", resp.Proto, tc.major)
				}
			}
		})
	}
	// The caller's transport is not changed.
	tr := &http.Transport{TLSClientConfig: store.ClientConfig("web", "api")}
	staticClient(t, endpointsOf(b.Addr()), client.WithoutProbe(), client.WithTransport(tr))
	if tr.ForceAttemptHTTP2 {
		t.Fatal("the client changed the caller's transport")
	}
}
