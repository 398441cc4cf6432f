package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/resolver"
)

// newDNS builds the resolver of target (scheme dns or dns+srv) asking srv,
// with fast retries.
func newDNS(t *testing.T, srv string, target string, opts ...resolver.Option) resolver.Resolver {
	t.Helper()
	opts = append([]resolver.Option{
		resolver.WithLogger(testlog.New(t)),
		resolver.WithNameservers(srv),
		resolver.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		resolver.WithRefreshInterval(20*time.Millisecond, time.Minute),
		resolver.WithDNSTimeout(300 * time.Millisecond),
	}, opts...)
	r, err := resolver.New(target, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", target, err)
	}
	return r
}

// waitQueries waits until the server has received n queries for name and
// qtype.
func waitQueries(t *testing.T, ctx context.Context, s *dnstest.Server, name string, qtype uint16, n int) []dnstest.Query {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var qs []dnstest.Query
		for _, q := range s.Queries() {
			if dns.CanonicalName(q.Name) == dns.CanonicalName(name) && q.Type == qtype {
				qs = append(qs, q)
			}
		}
		if len(qs) >= n {
			return qs
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%d %s queries for %s, want %d", len(qs), dns.TypeToString[qtype], name, n)
		}
	}
}

func TestDNSResolverDeliversBothAddressFamilies(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetA("api.example.test", 30, "127.0.0.1", "127.0.0.2")
	s.SetAAAA("api.example.test", 20, "::1")
	// Through the target's authority rather than WithNameservers.
	r, err := resolver.New("dns://"+s.Addr()+"/api.example.test:8443", resolver.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, r)
	st := w.waitAddrs(t, ctx, "127.0.0.1:8443", "127.0.0.2:8443", "[::1]:8443")
	for _, tc := range []struct {
		addr, kind string
		ttl        time.Duration
	}{
		{"127.0.0.1:8443", "dns-a", 30 * time.Second},
		{"[::1]:8443", "dns-aaaa", 20 * time.Second},
	} {
		o := endpoint(t, st, tc.addr).Origin
		if o.Kind != tc.kind || o.Name != "api.example.test." || o.TTL != tc.ttl {
			t.Errorf("%s origin = %+v, want %s of api.example.test. with TTL %v", tc.addr, o, tc.kind, tc.ttl)
		}
	}
}

func TestDNSResolverFollowsAliases(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetCNAME("api.example.test", 30, "lb.example.test")
	s.SetA("lb.example.test", 30, "127.0.0.7")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
	w.waitAddrs(t, ctx, "127.0.0.7:80")
}

func TestDNSSRVResolverDeliversWeightsPortsAndPriorities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		additional bool
		opts       []resolver.Option
		want       map[string][2]int // addr -> weight, priority
	}{
		{
			name: "lowest priority group, addresses from the additional section", additional: true,
			want: map[string][2]int{"127.0.0.1:8001": {5, 10}, "127.0.0.2:8002": {1, 10}, "[::1]:8002": {1, 10}},
		},
		{
			name: "lowest priority group, addresses looked up", additional: false,
			want: map[string][2]int{"127.0.0.1:8001": {5, 10}, "127.0.0.2:8002": {1, 10}, "[::1]:8002": {1, 10}},
		},
		{
			name: "all priorities", additional: true, opts: []resolver.Option{resolver.WithAllSRVPriorities()},
			want: map[string][2]int{"127.0.0.1:8001": {5, 10}, "127.0.0.2:8002": {1, 10}, "[::1]:8002": {1, 10}, "127.0.0.3:9000": {0, 20}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 10*time.Second)
			s := dnstest.Start(t)
			s.SetSRV("_api._tcp.example.test", 60,
				dnstest.SRV{Priority: 10, Weight: 5, Port: 8001, Target: "one.example.test"},
				dnstest.SRV{Priority: 10, Weight: 1, Port: 8002, Target: "two.example.test"},
				dnstest.SRV{Priority: 20, Weight: 0, Port: 9000, Target: "backup.example.test"},
				dnstest.SRV{Priority: 5, Weight: 9, Port: 9001, Target: "gone.example.test"}, // no address: skipped
			)
			s.SetA("one.example.test", 30, "127.0.0.1")
			s.SetA("two.example.test", 30, "127.0.0.2")
			s.SetAAAA("two.example.test", 30, "::1")
			s.SetA("backup.example.test", 30, "127.0.0.3")
			s.SetSRVAdditional(tc.additional)

			w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns+srv:///_api._tcp.example.test", tc.opts...))
			var want []string
			for a := range tc.want {
				want = append(want, a)
			}
			st := w.waitAddrs(t, ctx, want...)
			for _, e := range st.Endpoints {
				wp := tc.want[e.Addr]
				if int(e.Weight) != wp[0] || int(e.Origin.Priority) != wp[1] || e.Origin.Kind != "dns-srv" ||
					e.Origin.Name != "_api._tcp.example.test." || e.Origin.TTL != 30*time.Second {
					t.Errorf("%s: weight %d priority %d origin %+v, want weight %d priority %d, TTL 30s", e.Addr, e.Weight, e.Origin.Priority, e.Origin, wp[0], wp[1])
				}
			}
			looked := s.Count("one.example.test", dns.TypeA, "") > 0
			if looked == tc.additional {
				t.Errorf("target address lookups: %v with the additional section %v", looked, tc.additional)
			}
		})
	}
}

func TestDNSSRVResolverFallsBackToNextPriorityGroup(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetSRV("_api._tcp.example.test", 60,
		dnstest.SRV{Priority: 10, Weight: 5, Port: 8001, Target: "one.example.test"},
		dnstest.SRV{Priority: 20, Weight: 1, Port: 9000, Target: "backup.example.test"},
	)
	s.SetA("one.example.test", 1, "127.0.0.1")
	s.SetA("backup.example.test", 1, "127.0.0.3")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns+srv:///_api._tcp.example.test"))
	w.waitAddrs(t, ctx, "127.0.0.1:8001")
	s.Remove("one.example.test") // the preferred group has no address left
	st := w.waitAddrs(t, ctx, "127.0.0.3:9000")
	if p := st.Endpoints[0].Origin.Priority; p != 20 {
		t.Fatalf("backup priority = %d, want 20", p)
	}
}

func TestDNSResolverRefreshesWhenTTLRunsOut(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetA("api.example.test", 1, "127.0.0.1")
	s.SetSRV("_api._tcp.example.test", 1, dnstest.SRV{Priority: 1, Weight: 1, Port: 8001, Target: "api.example.test"})
	a := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
	srv := startWatch(t, ctx, newDNS(t, s.Addr(), "dns+srv:///_api._tcp.example.test"))
	a.waitAddrs(t, ctx, "127.0.0.1:80")
	srv.waitAddrs(t, ctx, "127.0.0.1:8001")

	s.SetA("api.example.test", 1, "127.0.0.2", "127.0.0.3")
	s.SetSRV("_api._tcp.example.test", 1, dnstest.SRV{Priority: 1, Weight: 1, Port: 8002, Target: "api.example.test"})
	a.waitAddrs(t, ctx, "127.0.0.2:80", "127.0.0.3:80")
	srv.waitAddrs(t, ctx, "127.0.0.2:8002", "127.0.0.3:8002")
}

func TestDNSResolverRefreshIntervalFollowsTTLWithinBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		ttl                uint32
		minRefresh, maxRef time.Duration
		lo, hi             time.Duration // accepted gap between two queries
	}{
		// The gaps are measured at the server: a query may leave a few
		// milliseconds later than the one before did, hence the slack
		// below the interval.
		{"TTL 0 waits the minimum", 0, 150 * time.Millisecond, time.Minute, 120 * time.Millisecond, 900 * time.Millisecond},
		{"TTL followed", 1, 10 * time.Millisecond, time.Minute, 950 * time.Millisecond, 1900 * time.Millisecond},
		{"long TTL capped at the maximum", 3600, 10 * time.Millisecond, 200 * time.Millisecond, 170 * time.Millisecond, 900 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 10*time.Second)
			s := dnstest.Start(t)
			s.SetA("api.example.test", tc.ttl, "127.0.0.1")
			startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80",
				resolver.WithRefreshInterval(tc.minRefresh, tc.maxRef)))
			qs := waitQueries(t, ctx, s, "api.example.test", dns.TypeA, 3)
			for i := 1; i < 3; i++ {
				if gap := qs[i].Time.Sub(qs[i-1].Time); gap < tc.lo || gap > tc.hi {
					t.Errorf("query %d came %v after the previous one, want %v..%v", i, gap, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestDNSResolverFallsBackToTCPWhenTruncated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*dnstest.Server) []string
	}{
		{"server truncates every UDP answer", func(s *dnstest.Server) []string {
			s.SetTruncateUDP(true)
			s.SetA("api.example.test", 30, "127.0.0.1")
			return []string{"127.0.0.1:80"}
		}},
		{"answer too big for UDP", func(s *dnstest.Server) []string {
			// 120 AAAA records (28 bytes each) do not fit 1232 bytes.
			var ips, want []string
			for i := range 120 {
				ip := "2001:db8::" + strconv.FormatInt(int64(i+1), 16)
				ips = append(ips, ip)
				want = append(want, "["+ip+"]:80")
			}
			s.SetAAAA("api.example.test", 30, ips...)
			return want
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 10*time.Second)
			s := dnstest.Start(t)
			want := tc.setup(s)
			w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
			w.waitAddrs(t, ctx, want...)
			if s.Count("api.example.test", dns.TypeA, "udp") == 0 {
				t.Fatal("no UDP query first")
			}
			if s.Count("api.example.test", dns.TypeAAAA, "tcp")+s.Count("api.example.test", dns.TypeA, "tcp") == 0 {
				t.Fatal("no query over TCP after the truncated answer")
			}
		})
	}
}

func TestDNSResolverKeepsLastGoodSetOnFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fault   dnstest.Fault
		stop    bool  // the server is down instead
		wantErr error // errors.Is, if set
		garbage bool  // counted as a decode failure
	}{
		{fault: dnstest.FaultServFail},
		{fault: dnstest.FaultDrop},
		{fault: dnstest.FaultNXDomain, wantErr: resolver.ErrNotFound},
		{fault: dnstest.FaultNoAnswer, wantErr: resolver.ErrNotFound},
		{fault: dnstest.FaultWrongType, wantErr: resolver.ErrBadAnswer, garbage: true},
		{fault: dnstest.FaultWrongName, wantErr: resolver.ErrBadAnswer, garbage: true},
		{fault: dnstest.FaultMalformed, wantErr: resolver.ErrBadAnswer, garbage: true},
		{stop: true},
	} {
		name := tc.fault.String()
		if tc.stop {
			name = "server-down"
		}
		for _, srv := range []bool{false, true} {
			target := "dns:///api.example.test:80"
			if srv {
				target = "dns+srv:///_api._tcp.example.test"
			}
			t.Run(fmt.Sprintf("%s/%s", name, target), func(t *testing.T) {
				t.Parallel()
				ctx := timeout(t, 10*time.Second)
				s := dnstest.Start(t)
				s.SetA("api.example.test", 1, "127.0.0.1")
				s.SetSRV("_api._tcp.example.test", 1, dnstest.SRV{Priority: 1, Weight: 1, Port: 80, Target: "api.example.test"})
				reg := prometheus.NewRegistry()
				w := startWatch(t, ctx, newDNS(t, s.Addr(), target, resolver.WithRegisterer(reg)))
				w.waitAddrs(t, ctx, "127.0.0.1:80")

				if tc.stop {
					s.Stop()
				} else {
					s.SetFault(tc.fault)
				}
				st := w.waitErr(t, ctx)
				if got := addrs(st.Endpoints); len(got) != 1 || got[0] != "127.0.0.1:80" {
					t.Fatalf("after %s: %s, want the error with the last good set", name, describe(st))
				}
				if tc.wantErr != nil && !errors.Is(st.Err, tc.wantErr) {
					t.Fatalf("error %v, want %v", st.Err, tc.wantErr)
				}
				decode := metricValue(t, reg, "smartroute_resolver_decode_failures_total", nil)
				if (decode > 0) != tc.garbage {
					t.Errorf("decode failures = %v for %s", decode, name)
				}

				if tc.stop {
					s.Restart(t)
				} else {
					s.SetFault(dnstest.FaultNone)
				}
				s.SetA("api.example.test", 1, "127.0.0.2")
				w.waitAddrs(t, ctx, "127.0.0.2:80")
				for _, st := range w.history() {
					if len(st.Endpoints) == 0 {
						t.Fatalf("an empty set was delivered: %s", describe(st))
					}
				}
			})
		}
	}
}

func TestDNSResolverFirstNotFoundIsAnErrorWithNoEndpoints(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"dns:///api.example.test:80", "dns+srv:///_api._tcp.example.test"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t, 10*time.Second)
			s := dnstest.Start(t)
			s.SetA("other.example.test", 1, "127.0.0.9") // the zone exists, the name does not
			w := startWatch(t, ctx, newDNS(t, s.Addr(), target))
			st := w.waitFor(t, ctx, "the first State", func(resolver.State) bool { return true })
			if !errors.Is(st.Err, resolver.ErrNotFound) || len(st.Endpoints) != 0 {
				t.Fatalf("first State %s, want ErrNotFound and no endpoints", describe(st))
			}
			// Exists but empty: still not found.
			s.SetAAAA("api.example.test", 1, "::1")
			s.SetAAAA("api.example.test", 1)
			s.SetA("api.example.test", 1, "127.0.0.1")
			s.SetSRV("_api._tcp.example.test", 1, dnstest.SRV{Priority: 1, Weight: 1, Port: 80, Target: "api.example.test"})
			w.waitAddrs(t, ctx, "127.0.0.1:80")
		})
	}
}

func TestDNSResolverResolveNowQueriesAgain(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetA("api.example.test", 3600, "127.0.0.1")
	r, err := resolver.NewDNS("api.example.test:80", resolver.WithNameservers(s.Addr()),
		resolver.WithRefreshInterval(10*time.Millisecond, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, r)
	w.waitAddrs(t, ctx, "127.0.0.1:80")
	s.SetA("api.example.test", 3600, "127.0.0.2")
	r.ResolveNow()
	w.waitAddrs(t, ctx, "127.0.0.2:80")
}

func TestDNSResolverTriesNextNameserver(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	down := dnstest.Start(t)
	down.Stop()
	failing := dnstest.Start(t)
	failing.SetFault(dnstest.FaultServFail)
	good := dnstest.Start(t)
	good.SetA("api.example.test", 30, "127.0.0.1")
	r, err := resolver.NewDNS("api.example.test:80", resolver.WithNameservers(down.Addr(), failing.Addr(), good.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, r)
	w.waitAddrs(t, ctx, "127.0.0.1:80")
}

func TestNewDNSReadsNameserversFromResolvConf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.conf", "search example.test\nnameserver 127.0.0.1\nnameserver ::1\n")
	empty := write("empty.conf", "search example.test\n")
	for _, tc := range []struct {
		name string
		opts []resolver.Option
		ok   bool
	}{
		{"good file", []resolver.Option{resolver.WithResolvConf(good)}, true},
		{"no nameserver", []resolver.Option{resolver.WithResolvConf(empty)}, false},
		{"missing file", []resolver.Option{resolver.WithResolvConf(filepath.Join(dir, "missing"))}, false},
		{"missing file but nameservers given", []resolver.Option{resolver.WithResolvConf(filepath.Join(dir, "missing")), resolver.WithNameservers("127.0.0.1:5353")}, true},
		{"bad nameserver", []resolver.Option{resolver.WithNameservers("ns.example.test")}, false},
		{"bad refresh interval", []resolver.Option{resolver.WithNameservers("127.0.0.1"), resolver.WithRefreshInterval(time.Minute, time.Second)}, false},
	} {
		_, err := resolver.NewDNS("api.example.test:80", tc.opts...)
		if (err == nil) != tc.ok {
			t.Errorf("%s: NewDNS error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDNSResolverAsksAgainWithoutEDNSForOldServers(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	s.SetRejectEDNS(true)
	s.SetA("api.example.test", 30, "127.0.0.1")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
	w.waitAddrs(t, ctx, "127.0.0.1:80")
}

func TestDNSResolverDeliversIPAddressTargetsWithoutQuerying(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 10*time.Second)
	s := dnstest.Start(t)
	w4 := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///10.0.0.1:443"))
	w6 := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///[2001:db8::1]:443"))
	if st := w4.waitAddrs(t, ctx, "10.0.0.1:443"); st.Endpoints[0].Origin.Kind != "dns-a" {
		t.Errorf("origin %+v", st.Endpoints[0].Origin)
	}
	if st := w6.waitAddrs(t, ctx, "[2001:db8::1]:443"); st.Endpoints[0].Origin.Kind != "dns-aaaa" {
		t.Errorf("origin %+v", st.Endpoints[0].Origin)
	}
	if q := s.Queries(); len(q) != 0 {
		t.Fatalf("queries %v for an IP address target", q)
	}
}

// The name server goes down, comes back answering garbage, then heals:
// the resolver keeps the last good set throughout, reports each error, and
// follows the fixed answer.
func TestFaultDNSServerDownThenGarbage(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 15*time.Second)
	s := dnstest.Start(t)
	s.SetA("api.example.test", 1, "127.0.0.1", "127.0.0.2")
	w := startWatch(t, ctx, newDNS(t, s.Addr(), "dns:///api.example.test:80"))
	w.waitAddrs(t, ctx, "127.0.0.1:80", "127.0.0.2:80")

	s.Stop()
	st := w.waitErr(t, ctx)
	if got := addrs(st.Endpoints); len(got) != 2 {
		t.Fatalf("server down: %s, want the last good set", describe(st))
	}
	s.SetFault(dnstest.FaultMalformed)
	s.Restart(t)
	waitGarbage := func() resolver.State {
		for {
			st := w.waitErr(t, ctx)
			if errors.Is(st.Err, resolver.ErrBadAnswer) {
				return st
			}
		}
	}
	if st := waitGarbage(); len(addrs(st.Endpoints)) != 2 {
		t.Fatalf("garbage answers: %s, want the last good set", describe(st))
	}
	s.SetFault(dnstest.FaultNone)
	s.SetA("api.example.test", 1, "127.0.0.3")
	w.waitAddrs(t, ctx, "127.0.0.3:80")
}
