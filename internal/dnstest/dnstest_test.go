package dnstest_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smartroute/smartroute/internal/dnstest"
	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func exchange(t *testing.T, addr, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func mustExchange(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(t, addr, network, name, qtype)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", dns.TypeToString[qtype], name, network, err)
	}
	return r
}

func TestServerAnswersZoneOverUDPAndTCP(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetA("api.example.test", 7, "127.0.0.1", "127.0.0.2")
	s.SetAAAA("api.example.test", 9, "::1")
	s.SetCNAME("alias.example.test", 3, "api.example.test")
	s.SetSRV("_api._tcp.example.test", 5, dnstest.SRV{Priority: 1, Weight: 2, Port: 8443, Target: "api.example.test"})

	for _, network := range []string{"udp", "tcp"} {
		r := mustExchange(t, s.Addr(), network, "api.example.test", dns.TypeA)
		if len(r.Answer) != 2 || r.Answer[0].Header().Ttl != 7 {
			t.Fatalf("%s: A answer = %v, want two records with TTL 7", network, r.Answer)
		}
	}
	r := mustExchange(t, s.Addr(), "udp", "alias.example.test", dns.TypeAAAA)
	if len(r.Answer) != 2 {
		t.Fatalf("AAAA via alias = %v, want CNAME + AAAA", r.Answer)
	}
	if _, ok := r.Answer[0].(*dns.CNAME); !ok {
		t.Fatalf("first record %v, want the CNAME", r.Answer[0])
	}
	r = mustExchange(t, s.Addr(), "udp", "_api._tcp.example.test", dns.TypeSRV)
	if len(r.Answer) != 1 || len(r.Extra) != 3 {
		t.Fatalf("SRV answer %v extra %v, want 1 SRV and 3 target addresses", r.Answer, r.Extra)
	}
	s.SetSRVAdditional(false)
	r = mustExchange(t, s.Addr(), "udp", "_api._tcp.example.test", dns.TypeSRV)
	if len(r.Extra) != 0 {
		t.Fatalf("extra %v with additional off", r.Extra)
	}
	r = mustExchange(t, s.Addr(), "udp", "missing.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	r = mustExchange(t, s.Addr(), "udp", "_api._tcp.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("name without A records: %v, want NOERROR and no answer", r)
	}
	if got := s.Count("API.example.test.", dns.TypeA, "tcp"); got != 1 {
		t.Fatalf("Count(A over tcp) = %d, want 1", got)
	}
}

func TestServerTruncatesUDPWhenAsked(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetA("api.example.test", 30, "127.0.0.1")
	s.SetTruncateUDP(true)
	r := mustExchange(t, s.Addr(), "udp", "api.example.test", dns.TypeA)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("UDP answer %v, want truncated and empty", r)
	}
	r = mustExchange(t, s.Addr(), "tcp", "api.example.test", dns.TypeA)
	if r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("TCP answer %v, want the record", r)
	}
}

func TestServerFaults(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetA("api.example.test", 30, "127.0.0.1")
	for _, tc := range []struct {
		fault dnstest.Fault
		check func(*dns.Msg, error) bool
	}{
		{dnstest.FaultServFail, func(r *dns.Msg, err error) bool { return err == nil && r.Rcode == dns.RcodeServerFailure }},
		{dnstest.FaultNXDomain, func(r *dns.Msg, err error) bool { return err == nil && r.Rcode == dns.RcodeNameError }},
		{dnstest.FaultNoAnswer, func(r *dns.Msg, err error) bool { return err == nil && r.Rcode == 0 && len(r.Answer) == 0 }},
		{dnstest.FaultWrongType, func(r *dns.Msg, err error) bool { return err == nil && r.Answer[0].Header().Rrtype == dns.TypeTXT }},
		{dnstest.FaultWrongName, func(r *dns.Msg, err error) bool { return err == nil && r.Answer[0].Header().Name == "wrong.invalid." }},
		{dnstest.FaultMalformed, func(r *dns.Msg, err error) bool { return err != nil && !isTimeout(err) }},
		{dnstest.FaultDrop, func(r *dns.Msg, err error) bool { return isTimeout(err) }},
	} {
		s.SetFault(tc.fault)
		r, err := exchange(t, s.Addr(), "udp", "api.example.test", dns.TypeA)
		if !tc.check(r, err) {
			t.Errorf("fault %v: answer %v, err %v", tc.fault, r, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestServerStopAndRestartKeepsPortAndZone(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetA("api.example.test", 30, "127.0.0.1")
	addr := s.Addr()
	s.Stop()
	if _, err := exchange(t, addr, "tcp", "api.example.test", dns.TypeA); err == nil {
		t.Fatal("a stopped server answered over TCP")
	}
	s.Restart(t)
	if s.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, s.Addr())
	}
	for _, network := range []string{"udp", "tcp"} {
		if r := mustExchange(t, addr, network, "api.example.test", dns.TypeA); len(r.Answer) != 1 {
			t.Fatalf("after restart over %s: %v", network, r)
		}
	}
}

func TestDnsmasqServesHostsAndSRV(t *testing.T) {
	t.Parallel()
	d := dnstest.StartDnsmasq(t, dnstest.DnsmasqConfig{
		Hosts: map[string][]string{"api.example.test": {"127.0.0.1", "::1"}},
		SRV:   []dnstest.DnsmasqSRV{{Name: "_api._tcp.example.test", Target: "api.example.test", Port: 8443, Priority: 1, Weight: 5}},
		TTL:   1,
	})
	r := mustExchange(t, d.Addr(), "udp", "api.example.test", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 1 {
		t.Fatalf("A answer %v", r.Answer)
	}
	r = mustExchange(t, d.Addr(), "tcp", "_api._tcp.example.test", dns.TypeSRV)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 8443 {
		t.Fatalf("SRV answer %v", r.Answer)
	}
	d.SetHosts(t, map[string][]string{"api.example.test": {"127.0.0.9"}})
	r = mustExchange(t, d.Addr(), "udp", "api.example.test", dns.TypeA)
	if len(r.Answer) != 1 || !r.Answer[0].(*dns.A).A.Equal(net.ParseIP("127.0.0.9")) {
		t.Fatalf("A answer after SetHosts %v", r.Answer)
	}
	r = mustExchange(t, d.Addr(), "udp", "missing.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

func TestFaultForOneTypeLeavesTheOthers(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetA("api.example.test", 30, "127.0.0.1")
	s.SetAAAA("api.example.test", 30, "::1")
	s.SetFaultFor(dns.TypeAAAA, dnstest.FaultServFail)
	if r := mustExchange(t, s.Addr(), "udp", "api.example.test", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("A with AAAA failing: %v", r)
	}
	if r := mustExchange(t, s.Addr(), "udp", "api.example.test", dns.TypeAAAA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("AAAA: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	s.SetFaultFor(dns.TypeAAAA, dnstest.FaultNone)
	if r := mustExchange(t, s.Addr(), "udp", "api.example.test", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("AAAA after the fault: %v", r)
	}
}

func TestDNAMEIsAnsweredWithASynthesizedCNAME(t *testing.T) {
	t.Parallel()
	s := dnstest.Start(t)
	s.SetDNAME("old.test", 60, "new.test")
	s.SetA("api.new.test", 30, "127.0.0.1")
	r := mustExchange(t, s.Addr(), "udp", "api.old.test", dns.TypeA)
	if len(r.Answer) != 3 {
		t.Fatalf("answer %v, want DNAME, CNAME, A", r.Answer)
	}
	d, ok1 := r.Answer[0].(*dns.DNAME)
	c, ok2 := r.Answer[1].(*dns.CNAME)
	if !ok1 || !ok2 || d.Target != "new.test." || c.Target != "api.new.test." || c.Hdr.Name != "api.old.test." {
		t.Fatalf("answer %v", r.Answer)
	}
	if r := mustExchange(t, s.Addr(), "udp", "nothing.old.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("a name below the DNAME that does not exist: rcode %s", dns.RcodeToString[r.Rcode])
	}
}
