package resolver_test

import (
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/dnstest"
)

// The same resolvers against dnsmasq, a name server this module did not
// write. Skipped where dnsmasq is not installed (CI installs it).

func TestDNSResolverAgainstDnsmasq(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 15*time.Second)
	d := dnstest.StartDnsmasq(t, dnstest.DnsmasqConfig{
		Hosts: map[string][]string{
			"api.example.test": {"127.0.0.1", "127.0.0.2", "::1"},
			"one.example.test": {"127.0.0.11"},
			"two.example.test": {"127.0.0.12"},
		},
		SRV: []dnstest.DnsmasqSRV{
			{Name: "_api._tcp.example.test", Target: "one.example.test", Port: 8001, Priority: 10, Weight: 5},
			{Name: "_api._tcp.example.test", Target: "two.example.test", Port: 8002, Priority: 10, Weight: 1},
			{Name: "_api._tcp.example.test", Target: "api.example.test", Port: 9000, Priority: 20, Weight: 1},
		},
		TTL: 1,
	})

	a := startWatch(t, ctx, newDNS(t, d.Addr(), "dns:///api.example.test:443"))
	srv := startWatch(t, ctx, newDNS(t, d.Addr(), "dns+srv:///_api._tcp.example.test"))
	missing := startWatch(t, ctx, newDNS(t, d.Addr(), "dns:///missing.example.test:443"))

	st := a.waitAddrs(t, ctx, "127.0.0.1:443", "127.0.0.2:443", "[::1]:443")
	if ttl := st.Endpoints[0].Origin.TTL; ttl != time.Second {
		t.Errorf("TTL %v, want dnsmasq's --local-ttl of 1s", ttl)
	}
	st = srv.waitAddrs(t, ctx, "127.0.0.11:8001", "127.0.0.12:8002")
	if w := endpoint(t, st, "127.0.0.11:8001").Weight; w != 5 {
		t.Errorf("SRV weight %d, want 5", w)
	}
	if st := missing.waitErr(t, ctx); len(st.Endpoints) != 0 {
		t.Errorf("unknown name: %s, want an error and no endpoints", describe(st))
	}

	// The records change; the 1 s TTL runs out and the new set arrives.
	d.SetHosts(t, map[string][]string{
		"api.example.test": {"127.0.0.3"},
		"one.example.test": {"127.0.0.21"},
		"two.example.test": {"127.0.0.12"},
	})
	a.waitAddrs(t, ctx, "127.0.0.3:443")
	srv.waitAddrs(t, ctx, "127.0.0.21:8001", "127.0.0.12:8002")
}
