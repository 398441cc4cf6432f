package resolver_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/resolver"
)

// An AAAA query that is dropped or refused does not block the A records,
// at the first resolution or later; while it keeps failing, the AAAA
// addresses last answered stay. Before, resolution failed as long as either
// family did. The same holds for the targets of an SRV record.
func TestDNSResolverAnswersAAndAAAAIndependently(t *testing.T) {
	t.Parallel()
	for _, fault := range []dnstest.Fault{dnstest.FaultDrop, dnstest.FaultServFail} {
		t.Run(fault.String(), func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 20*time.Second)
			s := dnstest.Start(t)
			s.SetA("api.example.test", 1, "127.0.0.1")
			s.SetAAAA("api.example.test", 1, "::1")
			s.SetFaultFor(dns.TypeAAAA, fault)

			log := testlog.NewCounted(t)
			w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80", resolver.WithLogger(log.Logger)))
			// First resolution: the A record alone, no error.
			w.waitAddrs(t, ctx, "127.0.0.1:80")
			if len(log.Warnings()) == 0 {
				t.Error("the failing AAAA query was not reported")
			}

			// AAAA answers: both families.
			s.SetFaultFor(dns.TypeAAAA, dnstest.FaultNone)
			w.waitAddrs(t, ctx, "127.0.0.1:80", "[::1]:80")

			// AAAA fails again while A changes: the new A set, with the
			// last AAAA addresses.
			s.SetFaultFor(dns.TypeAAAA, fault)
			s.SetA("api.example.test", 1, "127.0.0.2")
			w.waitAddrs(t, ctx, "127.0.0.2:80", "[::1]:80")

			// And A failing keeps its last addresses while AAAA answers.
			s.SetFaultFor(dns.TypeAAAA, dnstest.FaultNone)
			s.SetFaultFor(dns.TypeA, fault)
			s.SetAAAA("api.example.test", 1, "::2")
			w.waitAddrs(t, ctx, "127.0.0.2:80", "[::2]:80")

			for _, st := range w.history() {
				if st.Err != nil {
					t.Errorf("error State while one family answered: %v", st.Err)
				}
			}
		})
	}
	t.Run("srv targets", func(t *testing.T) {
		t.Parallel()
		ctx := timeout(t, 20*time.Second)
		s := dnstest.Start(t)
		s.SetSRVAdditional(false)
		s.SetSRV("_api._tcp.example.test", 30, dnstest.SRV{Priority: 1, Weight: 1, Port: 8443, Target: "a.example.test"})
		s.SetA("a.example.test", 30, "127.0.0.1")
		s.SetAAAA("a.example.test", 30, "::1")
		s.SetFaultFor(dns.TypeAAAA, dnstest.FaultServFail)
		w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns+srv:///_api._tcp.example.test"))
		w.waitAddrs(t, ctx, "127.0.0.1:8443")
	})
	t.Run("both fail", func(t *testing.T) {
		t.Parallel()
		ctx := timeout(t, 20*time.Second)
		s := dnstest.Start(t)
		s.SetA("api.example.test", 1, "127.0.0.1")
		w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
		w.waitAddrs(t, ctx, "127.0.0.1:80")
		s.SetFaultFor(dns.TypeA, dnstest.FaultServFail)
		s.SetFaultFor(dns.TypeAAAA, dnstest.FaultServFail)
		if st := w.waitErr(t, ctx); len(st.Endpoints) != 1 {
			t.Fatalf("both families failing: %s, want the error with the last set", describe(st))
		}
	})
}

// A DNAME answer (RFC 6672) is followed, with or without the CNAME a
// server synthesizes from it. Before, its record was refused as one for
// a name that is neither the name asked nor an alias of it.
func TestDNSResolverFollowsDNAME(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetDNAME("old.example.test", 60, "new.example.test")
	s.SetA("api.new.example.test", 30, "127.0.0.1")
	s.SetAAAA("api.new.example.test", 30, "::1")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.old.example.test:443"))
	st := w.waitAddrs(t, ctx, "127.0.0.1:443", "[::1]:443")
	if ttl := st.Endpoints[0].Origin.TTL; ttl != 30*time.Second {
		t.Errorf("TTL through the DNAME %v, want the smallest on the way, 30s", ttl)
	}
}

func TestDNSResolverSubstitutesADNAMEWithoutCNAME(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetDNAMESynthesis(false)
	s.SetDNAME("old.example.test", 10, "new.example.test")
	s.SetA("api.new.example.test", 30, "127.0.0.1")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.old.example.test:443"))
	st := w.waitAddrs(t, ctx, "127.0.0.1:443")
	if ttl := st.Endpoints[0].Origin.TTL; ttl != 10*time.Second {
		t.Errorf("TTL %v, want the DNAME's 10s", ttl)
	}

}

// The name servers of the resolv.conf file are read again when it
// changes: a new file renamed into place, or the file rewritten in place.
// A file that cannot be used keeps the previous servers, and is reported
// once.
func TestDNSResolverRereadsResolvConf(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 20*time.Second)
	s := dnstest.Start(t)
	s.SetA("api.example.test", 1, "127.0.0.1")
	_, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	write := func(content string) {
		t.Helper()
		tmp := filepath.Join(dir, "resolv.conf.new")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing listens on 127.0.0.2 at the server's port.
	write("nameserver 127.0.0.2\n")
	log := testlog.NewCounted(t)
	r, err := resolver.NewDNS("api.example.test:80", resolver.WithResolvConf(conf), resolver.WithResolvConfPort(port),
		resolver.WithLogger(log.Logger), resolver.WithDNSTimeout(300*time.Millisecond),
		resolver.WithRefreshInterval(20*time.Millisecond, time.Minute), resolver.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, r)
	w.waitErr(t, ctx)

	write("search example.test\nnameserver 127.0.0.1\n")
	w.waitAddrs(t, ctx, "127.0.0.1:80")

	// A file without a name server is refused, once; the server stays.
	warned := len(log.Warnings())
	write("search example.test\n")
	s.SetA("api.example.test", 1, "127.0.0.3")
	w.waitAddrs(t, ctx, "127.0.0.3:80")
	waitQueries(t, ctx, s, "api.example.test", dns.TypeA, len(s.Queries())+3) // a few more resolutions
	if n := len(log.Warnings()) - warned; n != 1 {
		t.Errorf("%d warnings for one unusable resolv.conf, want 1: %q", n, log.Warnings()[warned:])
	}

	// Rewritten in place, back to the address where nothing answers.
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.2\n# rewritten\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.waitErr(t, ctx)
}
