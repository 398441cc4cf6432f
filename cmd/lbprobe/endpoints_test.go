package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// slowLatency is the slow backend's injected latency: far above loopback
// noise under -race, short enough to keep the tests fast.
const slowLatency = 40 * time.Millisecond

// fastSlowDown starts three HTTP backends: one fast, one slow, one
// stopped (its address refuses connections).
func fastSlowDown(t *testing.T) (fast, slow, down *testbackend.HTTP) {
	t.Helper()
	fast = testbackend.MustHTTP(t, testbackend.WithName("fast"))
	slow = testbackend.MustHTTP(t, testbackend.WithName("slow"), testbackend.WithLatency(slowLatency))
	down = testbackend.MustHTTP(t, testbackend.WithName("down"))
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	return fast, slow, down
}

// probeArgs are quick probing flags for tests.
var probeArgs = []string{"--check", "http", "--count", "4", "--interval", "5ms", "--timeout", "500ms"}

func TestEndpointsEtcdShowsHealthRTTPickAndRegistryDetails(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	fast, slow, down := fastSlowDown(t)
	drained := testbackend.MustHTTP(t, testbackend.WithName("drained"))

	regs := map[string]*registry.Registration{}
	for _, b := range []*testbackend.HTTP{fast, slow, down, drained} {
		regs[b.Name()] = register(t, cli, registry.Instance{Service: "api", ID: b.Name(), Addr: b.Addr(), Zone: "z-" + b.Name()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := regs["drained"].Drain(ctx); err != nil {
		t.Fatal(err)
	}

	// As a process, as the operator runs it.
	args := append([]string{"endpoints", "etcd:///api", "--json"}, append(etcdFlagsFor(c), probeArgs...)...)
	res := lbprobeProcess(t, args...)
	if res.code != exitSome {
		t.Fatalf("exit code %d, want %d (some unhealthy)\n%s", res.code, exitSome, res)
	}
	rep := decode[endpointsReport](t, res)
	if rep.Target != "etcd:///api" || len(rep.Endpoints) != 4 || rep.Healthy != 3 {
		t.Fatalf("target %q, %d endpoints, %d healthy; want etcd:///api, 4, 3\n%s", rep.Target, len(rep.Endpoints), rep.Healthy, res.stdout)
	}
	if rep.Pick != fast.Addr() {
		t.Errorf("pick = %s, want the fast backend %s (%s)", rep.Pick, fast.Addr(), rep.PickReason)
	}
	if !strings.Contains(rep.PickReason, "latency") {
		t.Errorf("pick reason %q does not say why", rep.PickReason)
	}
	byAddr := map[string]endpointReport{}
	for _, e := range rep.Endpoints {
		byAddr[e.Addr] = e
	}
	f, s, d, dr := byAddr[fast.Addr()], byAddr[slow.Addr()], byAddr[down.Addr()], byAddr[drained.Addr()]
	if !f.Healthy || !s.Healthy || d.Healthy || !dr.Healthy {
		t.Errorf("healthy fast=%v slow=%v down=%v drained=%v, want true true false true", f.Healthy, s.Healthy, d.Healthy, dr.Healthy)
	}
	if f.RTTAvgMS == nil || s.RTTAvgMS == nil || *s.RTTAvgMS < *f.RTTAvgMS+20 {
		t.Errorf("RTT avg fast %v ms, slow %v ms: want the slow one at least 20 ms slower", deref(f.RTTAvgMS), deref(s.RTTAvgMS))
	}
	if *s.RTTMinMS < float64(slowLatency/time.Millisecond) || *s.RTTP99MS < *s.RTTAvgMS {
		t.Errorf("slow backend min %v p99 %v avg %v ms, want min >= %v and p99 >= avg", *s.RTTMinMS, *s.RTTP99MS, *s.RTTAvgMS, slowLatency)
	}
	if d.Loss != 1 || d.RTTAvgMS != nil || d.Failures != 4 || d.Checks != 4 || !strings.Contains(d.Error, "refused") {
		t.Errorf("down backend: loss %v rtt %v failures %d/%d error %q; want 1, null, 4/4, connection refused", d.Loss, d.RTTAvgMS, d.Failures, d.Checks, d.Error)
	}
	if d.Eligible || !strings.HasPrefix(d.Why, "unhealthy") {
		t.Errorf("down backend eligible=%v why=%q, want not eligible because unhealthy", d.Eligible, d.Why)
	}
	if f.Loss != 0 || f.State != "up" || !f.Picked || !f.Eligible || f.Zone != "z-fast" || f.Weight != 1 {
		t.Errorf("fast backend: %+v", f)
	}
	if dr.State != "draining" || dr.Eligible || dr.Why != "draining" || dr.Picked {
		t.Errorf("drained backend: state %q eligible %v why %q picked %v; want draining, not eligible", dr.State, dr.Eligible, dr.Why, dr.Picked)
	}
	for name, e := range map[string]endpointReport{"fast": f, "slow": s, "down": d, "drained": dr} {
		src := e.Source
		reg := regs[name]
		if src.Kind != "etcd" || src.Key != reg.Key() || src.ID != name || src.Revision <= 0 {
			t.Errorf("%s source: %+v, want key %s", name, src, reg.Key())
		}
		if src.Lease != strconv.FormatInt(int64(reg.Lease()), 16) {
			t.Errorf("%s lease %q, want %x", name, src.Lease, int64(reg.Lease()))
		}
		if src.LeaseTTL == nil || *src.LeaseTTL < 1 || *src.LeaseTTL > 10 || *src.LeaseGranted != 10 {
			t.Errorf("%s lease TTL %v/%v, want 1..10 of 10 s", name, src.LeaseTTL, src.LeaseGranted)
		}
	}

	// The same as a table, for people.
	res = lbprobe(t, append([]string{"endpoints", "etcd:///api"}, append(etcdFlagsFor(c), probeArgs...)...)...)
	if res.code != exitSome {
		t.Fatalf("table: exit code %d, want 1\n%s", res.code, res)
	}
	table := res.stdout
	t.Logf("lbprobe endpoints etcd:///api:\n%s", table)
	for _, col := range []string{"ADDR", "ZONE", "WEIGHT", "STATE", "HEALTH", "RTT_MIN", "RTT_AVG", "RTT_P99", "LOSS", "TLS", "PICK", "KEY", "REV", "LEASE_TTL", "NOTE"} {
		if _, ok := cells(t, table, fast.Addr())[col]; !ok {
			t.Errorf("no column %s in:\n%s", col, table)
		}
	}
	fr := cells(t, table, fast.Addr())
	if fr["PICK"] != "yes" || fr["HEALTH"] != "healthy" || fr["KEY"] != regs["fast"].Key() {
		t.Errorf("fast row %q", fr)
	}
	if lt := fr["LEASE_TTL"]; !strings.HasSuffix(lt, "s/10s") {
		t.Errorf("fast lease TTL cell %q, want <left>s/10s", lt)
	}
	dn := cells(t, table, down.Addr())
	if dn["HEALTH"] != "unhealthy" || dn["LOSS"] != "100%" || dn["RTT_AVG"] != "-" {
		t.Errorf("down row %q", dn)
	}
	if r := cells(t, table, drained.Addr()); r["STATE"] != "draining" {
		t.Errorf("drained row %q", r)
	}
	if !strings.Contains(table, "pick: "+fast.Addr()+" (least_latency: ") || !strings.Contains(table, "etcd:///api: 3 of 4 endpoints healthy") {
		t.Errorf("footer missing:\n%s", table)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestEndpointsStaticExitCodes(t *testing.T) {
	fast, slow, down := fastSlowDown(t)
	for _, tc := range []struct {
		name    string
		addrs   []string
		code    int
		healthy int
	}{
		{"all healthy", []string{fast.Addr(), slow.Addr()}, exitOK, 2},
		{"some unhealthy", []string{fast.Addr(), down.Addr()}, exitSome, 1},
		{"none healthy", []string{down.Addr()}, exitNone, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "static:///" + strings.Join(tc.addrs, ",")
			res := lbprobe(t, append([]string{"endpoints", target, "--json"}, probeArgs...)...)
			if res.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", res.code, tc.code, res)
			}
			rep := decode[endpointsReport](t, res)
			if rep.Healthy != tc.healthy || len(rep.Endpoints) != len(tc.addrs) {
				t.Errorf("%d of %d healthy, want %d of %d", rep.Healthy, len(rep.Endpoints), tc.healthy, len(tc.addrs))
			}
			for _, e := range rep.Endpoints {
				if e.Source.Kind != "static" {
					t.Errorf("%s source kind %q, want static", e.Addr, e.Source.Kind)
				}
			}
		})
	}
	// The table of a static target has no source columns.
	res := lbprobe(t, append([]string{"endpoints", "static:///" + fast.Addr()}, probeArgs...)...)
	if res.code != exitOK || strings.Contains(res.stdout, "KEY") || strings.Contains(res.stdout, "RECORD") {
		t.Errorf("static table:\n%s", res)
	}
}

func TestEndpointsDNSShowsRecordTypeAndTTL(t *testing.T) {
	fast := testbackend.MustHTTP(t, testbackend.WithName("fast"))
	_, port, _ := net.SplitHostPort(fast.Addr())
	// The same port on other loopback addresses: slow on 127.0.0.2,
	// nothing on 127.0.0.3.
	slow := testbackend.MustHTTP(t, testbackend.WithName("slow"), testbackend.WithAddr("127.0.0.2:"+port), testbackend.WithLatency(slowLatency))
	downAddr := "127.0.0.3:" + port

	dns := dnstest.Start(t)
	dns.SetA("api.example.test", 30, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	target := "dns://" + dns.Addr() + "/api.example.test:" + port

	res := lbprobe(t, append([]string{"endpoints", target, "--json"}, probeArgs...)...)
	if res.code != exitSome {
		t.Fatalf("exit code %d, want 1\n%s", res.code, res)
	}
	rep := decode[endpointsReport](t, res)
	if len(rep.Endpoints) != 3 || rep.Pick != fast.Addr() {
		t.Fatalf("%d endpoints, pick %s; want 3, %s\n%s", len(rep.Endpoints), rep.Pick, fast.Addr(), res.stdout)
	}
	for _, e := range rep.Endpoints {
		if e.Source.Record != "A" || e.Source.TTL == nil || *e.Source.TTL != 30 || !strings.HasPrefix(e.Source.Name, "api.example.test") {
			t.Errorf("%s source %+v, want record A, TTL 30 s, name api.example.test", e.Addr, e.Source)
		}
		wantHealthy := e.Addr != downAddr
		if e.Healthy != wantHealthy {
			t.Errorf("%s healthy=%v, want %v", e.Addr, e.Healthy, wantHealthy)
		}
		if e.Addr == slow.Addr() && (e.RTTAvgMS == nil || *e.RTTAvgMS < float64(slowLatency/time.Millisecond)) {
			t.Errorf("slow RTT %v ms, want >= %v", deref(e.RTTAvgMS), slowLatency)
		}
	}

	res = lbprobe(t, append([]string{"endpoints", target}, probeArgs...)...)
	r := cells(t, res.stdout, "127.0.0.1:"+port)
	if r["RECORD"] != "A" || r["TTL"] != "30s" || r["PICK"] != "yes" {
		t.Errorf("fast row %q in:\n%s", r, res.stdout)
	}

	// SRV: the priority and the record type show; the ports come from
	// the records.
	dns.SetA("fast.example.test", 60, "127.0.0.1")
	dns.SetA("slow.example.test", 60, "127.0.0.2")
	dns.SetSRV("_api._tcp.example.test", 20,
		dnstest.SRV{Priority: 10, Weight: 5, Port: mustPort(t, fast.Addr()), Target: "fast.example.test"},
		dnstest.SRV{Priority: 10, Weight: 1, Port: mustPort(t, slow.Addr()), Target: "slow.example.test"})
	res = lbprobe(t, append([]string{"endpoints", "dns+srv://" + dns.Addr() + "/_api._tcp.example.test", "--json"}, probeArgs...)...)
	if res.code != exitOK {
		t.Fatalf("SRV: exit code %d, want 0\n%s", res.code, res)
	}
	rep = decode[endpointsReport](t, res)
	if len(rep.Endpoints) != 2 || rep.Pick != fast.Addr() {
		t.Fatalf("SRV: %d endpoints, pick %s\n%s", len(rep.Endpoints), rep.Pick, res.stdout)
	}
	for _, e := range rep.Endpoints {
		if e.Source.Record != "SRV" || e.Source.Priority == nil || *e.Source.Priority != 10 || e.Source.TTL == nil {
			t.Errorf("SRV %s source %+v", e.Addr, e.Source)
		}
		if e.Addr == fast.Addr() && e.Weight != 5 {
			t.Errorf("SRV weight of %s = %d, want 5", e.Addr, e.Weight)
		}
	}

	// A name that does not exist cannot be resolved: exit 2, one line.
	res = lbprobe(t, append([]string{"endpoints", "dns://" + dns.Addr() + "/nope.example.test:80"}, probeArgs...)...)
	if res.code != exitEtcd || res.stdout != "" || strings.Count(res.stderr, "\n") != 1 || !strings.HasPrefix(res.stderr, "lbprobe: resolve dns://") {
		t.Errorf("NXDOMAIN: %s", res)
	}
}

func mustPort(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func TestEndpointsTLSColumn(t *testing.T) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "backend-ca")
	other := certgen.NewCA(t, "other-ca")
	leaf := ca.Server(t, []string{"api.example.test", "127.0.0.1"}, certgen.ValidFor(91*24*time.Hour))
	_, _, caFile := certgen.WriteFiles(t, dir, "srv", ca, leaf)
	_, _, otherCA := certgen.WriteFiles(t, t.TempDir(), "x", other, other.Server(t, []string{"x"}))
	cert := leaf.TLSCertificate(t)
	b := testbackend.MustHTTP(t, testbackend.WithTLS(tlsServerConfig(cert)))
	target := "static:///" + b.Addr()

	// Verified: the certificate's validity began an hour ago and lasts 91 days.
	res := lbprobe(t, "endpoints", target, "--check", "https", "--check-cacert", caFile, "--count", "2", "--interval", "1ms", "--json")
	if res.code != exitOK {
		t.Fatalf("exit code %d\n%s", res.code, res)
	}
	e := decode[endpointsReport](t, res).Endpoints[0]
	if e.TLS == nil || !e.TLS.Verified || e.TLS.DaysLeft == nil || *e.TLS.DaysLeft != 90 || e.TLS.Version == "" || !strings.Contains(e.TLS.Subject, "api.example.test") {
		t.Fatalf("TLS report %+v, want verified with 90 days left", e.TLS)
	}
	res = lbprobe(t, "endpoints", target, "--check", "https", "--check-cacert", caFile, "--count", "1")
	if cell := cells(t, res.stdout, b.Addr())["TLS"]; cell != "ok 90d" {
		t.Errorf("TLS cell %q, want ok 90d\n%s", cell, res.stdout)
	}

	// The wrong CA: the https check fails, and the TLS column says why.
	res = lbprobe(t, "endpoints", target, "--check", "https", "--check-cacert", otherCA, "--count", "1", "--json")
	if res.code != exitNone {
		t.Fatalf("wrong CA: exit code %d, want 2\n%s", res.code, res)
	}
	e = decode[endpointsReport](t, res).Endpoints[0]
	if e.Healthy || e.TLS == nil || e.TLS.Verified || e.TLS.Problem != "untrusted" || !strings.Contains(e.TLS.Error, "unknown authority") {
		t.Errorf("wrong CA: healthy %v TLS %+v, want unhealthy, untrusted", e.Healthy, e.TLS)
	}

	// A TCP check with --tls: healthy, and the TLS problem still shows.
	res = lbprobe(t, "endpoints", target, "--check", "tcp", "--tls", "--check-cacert", otherCA, "--check-server-name", "api.example.test", "--count", "1")
	if res.code != exitOK {
		t.Fatalf("tcp --tls: exit code %d\n%s", res.code, res)
	}
	r := cells(t, res.stdout, b.Addr())
	if r["HEALTH"] != "healthy" || r["TLS"] != "untrusted" || !strings.Contains(res.stdout, "tls: ") {
		t.Errorf("tcp --tls row %q\n%s", r, res.stdout)
	}

	// The tls check: a wrong server name is a name mismatch.
	res = lbprobe(t, "endpoints", target, "--check", "tls", "--check-cacert", caFile, "--check-server-name", "wrong.example.test", "--count", "1", "--json")
	e = decode[endpointsReport](t, res).Endpoints[0]
	if res.code != exitNone || e.TLS == nil || e.TLS.Problem != "name_mismatch" {
		t.Errorf("tls check, wrong name: exit %d TLS %+v, want 2 and name_mismatch", res.code, e.TLS)
	}
}

func TestEndpointsGRPCHealthCheck(t *testing.T) {
	g := testbackend.MustGRPC(t)
	target := "static:///" + g.Addr()
	res := lbprobe(t, "endpoints", target, "--check", "grpc", "--count", "2", "--interval", "1ms", "--json")
	if res.code != exitOK {
		t.Fatalf("serving: %s", res)
	}
	g.SetServing("", false)
	res = lbprobe(t, "endpoints", target, "--check", "grpc", "--count", "2", "--interval", "1ms", "--json")
	e := decode[endpointsReport](t, res).Endpoints[0]
	if res.code != exitNone || e.Healthy || !strings.Contains(e.Error, "not serving") {
		t.Errorf("not serving: exit %d, endpoint %+v; want 2, unhealthy, not serving", res.code, e)
	}
}

// --max-rt judges the checks by a client's slow-call endpoint breaker: the
// slow backend's breaker opens, it is not picked, and the report says why.
func TestEndpointsMaxRTOpensTheSlowEndpointsBreaker(t *testing.T) {
	fast, slow, _ := fastSlowDown(t)
	other := testbackend.MustHTTP(t, testbackend.WithName("other"))
	target := "static:///" + strings.Join([]string{fast.Addr(), slow.Addr(), other.Addr()}, ",")
	args := append([]string{target, "--json", "--policy", "round_robin", "--max-rt", (slowLatency / 2).String()}, probeArgs...)
	res := lbprobe(t, append([]string{"endpoints"}, args...)...)
	if res.code != exitOK {
		t.Fatalf("exit code %d\n%s", res.code, res)
	}
	rep := decode[endpointsReport](t, res)
	for _, e := range rep.Endpoints {
		switch e.Addr {
		case slow.Addr():
			if e.Breaker != "open" || e.Eligible || !strings.Contains(e.Why, `circuit breaker "slow_call_ratio" open`) || e.Picked {
				t.Errorf("slow endpoint: breaker %q eligible %v why %q picked %v; want its breaker open and it out", e.Breaker, e.Eligible, e.Why, e.Picked)
			}
		default:
			if e.Breaker != "closed" || !e.Eligible {
				t.Errorf("%s: breaker %q eligible %v (%s); want closed and eligible", e.Addr, e.Breaker, e.Eligible, e.Why)
			}
		}
	}
	res = lbprobe(t, append([]string{"pick", "-n", "60"}, args...)...)
	prep := decode[pickReport](t, res)
	for _, p := range prep.Picks {
		if p.Addr == slow.Addr() && p.Picks != 0 {
			t.Errorf("the slow endpoint, its breaker open, got %d of 60 round-robin picks", p.Picks)
		}
	}
	// Without --max-rt there is no breaker.
	res = lbprobe(t, append([]string{"endpoints", target, "--json"}, probeArgs...)...)
	for _, e := range decode[endpointsReport](t, res).Endpoints {
		if e.Breaker != "" {
			t.Errorf("%s: breaker %q without --max-rt", e.Addr, e.Breaker)
		}
	}
}
