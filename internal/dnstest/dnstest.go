// Package dnstest runs real DNS servers on loopback for tests.
//
// Start serves a zone held in memory with github.com/miekg/dns, over UDP
// and TCP on the same 127.0.0.1 port, as a real name server does. Records
// (A, AAAA, CNAME, SRV) and their TTLs can be changed while it runs, and
// faults injected: SERVFAIL, NXDOMAIN, empty answers, no answer at all,
// answers of the wrong type or name, bytes that do not parse, and
// truncated UDP answers that force a client over to TCP. It can be stopped
// and restarted on the same port. Every query is recorded.
//
//	s := dnstest.Start(t)
//	s.SetA("api.example.test", 30, "127.0.0.1", "127.0.0.2")
//	s.SetSRV("_api._tcp.example.test", 30, dnstest.SRV{Priority: 10, Weight: 5, Port: 8443, Target: "api.example.test"})
//	s.SetFault(dnstest.FaultServFail)
//
// StartDnsmasq runs the dnsmasq program instead, when it is installed, for
// tests against a name server this module did not write.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault is how the server misbehaves; FaultNone answers from the zone.
type Fault int

const (
	// FaultNone answers from the zone.
	FaultNone Fault = iota
	// FaultServFail answers SERVFAIL.
	FaultServFail
	// FaultNXDomain answers NXDOMAIN, whatever the zone holds.
	FaultNXDomain
	// FaultNoAnswer answers NOERROR with an empty answer section.
	FaultNoAnswer
	// FaultDrop does not answer: the client times out.
	FaultDrop
	// FaultWrongType answers with TXT records for the name asked.
	FaultWrongType
	// FaultWrongName answers with records of the right type for another
	// name (wrong.invalid.).
	FaultWrongName
	// FaultMalformed answers bytes that do not parse as a DNS message
	// (the header is right, the records are cut short).
	FaultMalformed
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultServFail:
		return "servfail"
	case FaultNXDomain:
		return "nxdomain"
	case FaultNoAnswer:
		return "no-answer"
	case FaultDrop:
		return "drop"
	case FaultWrongType:
		return "wrong-type"
	case FaultWrongName:
		return "wrong-name"
	case FaultMalformed:
		return "malformed"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// SRV is one SRV record's data.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

// Query is one query the server received.
type Query struct {
	Name string // as asked, fully qualified
	Type uint16 // dns.TypeA, …
	Net  string // "udp" or "tcp"
	Time time.Time
}

// Server is a DNS server on a loopback port, serving UDP and TCP. Its
// methods are safe for concurrent use; test helpers among them fail the
// test rather than return errors.
type Server struct {
	addr string // 127.0.0.1:port, fixed for the server's life

	mu          sync.Mutex
	zone        map[string][]dns.RR // by canonical owner name
	fault       Fault
	typeFaults  map[uint16]Fault // by query type, over fault
	truncateUDP bool
	noExtra     bool
	noEDNS      bool
	noSynth     bool // DNAME answers without the synthesized CNAME
	queries     []Query
	udp, tcp    *dns.Server
	served      sync.WaitGroup // the serving goroutines
}

// Start starts a server on a free 127.0.0.1 port and stops it at the
// test's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{zone: make(map[string][]dns.RR), typeFaults: make(map[uint16]Fault)}
	var err error
	for range 20 {
		var pc net.PacketConn
		var l net.Listener
		pc, l, err = listenPair("127.0.0.1:0")
		if err != nil {
			continue
		}
		s.addr = pc.LocalAddr().String()
		s.serve(pc, l)
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("dnstest: listen: %v", err)
	return nil
}

// listenPair opens UDP and TCP on the same address; with port 0 it picks a
// UDP port and takes the same TCP port, failing if that one is taken.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, l, nil
}

func (s *Server) serve(pc net.PacketConn, l net.Listener) {
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.mu.Lock()
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.handle), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.handle), NotifyStartedFunc: notify}
	servers := []*dns.Server{s.udp, s.tcp}
	s.mu.Unlock()
	for _, srv := range servers {
		s.served.Add(1)
		go func() {
			defer s.served.Done()
			srv.ActivateAndServe()
		}()
	}
	<-started
	<-started
}

// Addr returns the host:port the server listens on, over UDP and TCP. It
// stays the same across Stop and Restart.
func (s *Server) Addr() string { return s.addr }

// Stop stops serving and waits until the server's goroutines have ended.
// The zone, faults and query log are kept for Restart. Stopping a stopped
// server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	udp, tcp := s.udp, s.tcp
	s.udp, s.tcp = nil, nil
	s.mu.Unlock()
	if udp == nil {
		return
	}
	udp.Shutdown()
	tcp.Shutdown()
	s.served.Wait()
}

// Restart serves again on the same port after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	running := s.udp != nil
	s.mu.Unlock()
	if running {
		t.Fatalf("dnstest: restart: server on %s is running", s.addr)
	}
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var pc net.PacketConn
		var l net.Listener
		if pc, l, err = listenPair(s.addr); err == nil {
			s.serve(pc, l)
			return
		}
	}
	t.Fatalf("dnstest: restart on %s: %v", s.addr, err)
}

// SetA replaces the A records of name. No addresses removes them.
func (s *Server) SetA(name string, ttl uint32, ips ...string) {
	s.setAddrs(name, dns.TypeA, ttl, ips)
}

// SetAAAA replaces the AAAA records of name. No addresses removes them.
func (s *Server) SetAAAA(name string, ttl uint32, ips ...string) {
	s.setAddrs(name, dns.TypeAAAA, ttl, ips)
}

func (s *Server) setAddrs(name string, qtype uint16, ttl uint32, ips []string) {
	rrs := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || (qtype == dns.TypeA) != a.Is4() {
			panic(fmt.Sprintf("dnstest: %q is not an address for a %s record", ip, dns.TypeToString[qtype]))
		}
		h := header(name, qtype, ttl)
		if qtype == dns.TypeA {
			rrs = append(rrs, &dns.A{Hdr: h, A: a.AsSlice()})
		} else {
			rrs = append(rrs, &dns.AAAA{Hdr: h, AAAA: a.AsSlice()})
		}
	}
	s.Set(name, qtype, rrs...)
}

// SetSRV replaces the SRV records of name.
func (s *Server) SetSRV(name string, ttl uint32, recs ...SRV) {
	rrs := make([]dns.RR, len(recs))
	for i, r := range recs {
		rrs[i] = &dns.SRV{Hdr: header(name, dns.TypeSRV, ttl), Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: dns.Fqdn(r.Target)}
	}
	s.Set(name, dns.TypeSRV, rrs...)
}

// SetCNAME makes name an alias of target.
func (s *Server) SetCNAME(name string, ttl uint32, target string) {
	s.Set(name, dns.TypeCNAME, &dns.CNAME{Hdr: header(name, dns.TypeCNAME, ttl), Target: dns.Fqdn(target)})
}

// Set replaces the records of type qtype owned by name with rrs, which may
// be of any type (to serve odd zones). No rrs removes them; a name without
// records answers NXDOMAIN.
func (s *Server) Set(name string, qtype uint16, rrs ...dns.RR) {
	key := dns.CanonicalName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := slices.DeleteFunc(slices.Clone(s.zone[key]), func(rr dns.RR) bool { return rr.Header().Rrtype == qtype })
	kept = append(kept, rrs...)
	if len(kept) == 0 {
		delete(s.zone, key)
		return
	}
	s.zone[key] = kept
}

// Remove removes every record of name: it answers NXDOMAIN.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zone, dns.CanonicalName(name))
}

// SetFault makes the server misbehave for every query, until
// SetFault(FaultNone).
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// SetFaultFor makes the server misbehave for queries of type qtype only,
// whatever SetFault says, until SetFaultFor(qtype, FaultNone): for
// example, AAAA queries dropped or answered SERVFAIL while A queries are
// answered, as some resolvers and middleboxes do.
func (s *Server) SetFaultFor(qtype uint16, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == FaultNone {
		delete(s.typeFaults, qtype)
		return
	}
	s.typeFaults[qtype] = f
}

// SetDNAME makes owner's subtree an alias of target's (RFC 6672): a query
// for a name below owner is answered with the DNAME record, a CNAME
// synthesized from it, and the records of the name it leads to.
func (s *Server) SetDNAME(owner string, ttl uint32, target string) {
	s.Set(owner, dns.TypeDNAME, &dns.DNAME{Hdr: header(owner, dns.TypeDNAME, ttl), Target: dns.Fqdn(target)})
}

// SetDNAMESynthesis sets whether DNAME answers carry the CNAME synthesized
// from the DNAME (the default, as RFC 6672 servers do) or the DNAME alone,
// leaving the client to substitute.
func (s *Server) SetDNAMESynthesis(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noSynth = !on
}

// SetTruncateUDP makes every UDP answer truncated (TC set, no records), so
// that clients must ask again over TCP. Without it UDP answers are
// truncated only when they do not fit the client's buffer (512 bytes, or
// its EDNS(0) size), as real servers do.
func (s *Server) SetTruncateUDP(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncateUDP = on
}

// SetSRVAdditional sets whether SRV answers carry their targets' A and
// AAAA records in the additional section (the default) or leave clients to
// look them up.
func (s *Server) SetSRVAdditional(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noExtra = !on
}

// SetRejectEDNS makes the server answer FORMERR to queries that carry an
// EDNS(0) OPT record, as servers from before RFC 2671 do.
func (s *Server) SetRejectEDNS(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noEDNS = on
}

// Queries returns the queries received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// Count returns how many queries for name (any case, with or without the
// final dot) and qtype arrived over network ("udp", "tcp", or "" for
// both).
func (s *Server) Count(name string, qtype uint16, network string) int {
	name = dns.CanonicalName(name)
	n := 0
	for _, q := range s.Queries() {
		if dns.CanonicalName(q.Name) == name && q.Type == qtype && (network == "" || q.Net == network) {
			n++
		}
	}
	return n
}

func header(name string, qtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: qtype, Class: dns.ClassINET, Ttl: ttl}
}

// handle answers one query.
func (s *Server) handle(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	s.mu.Lock()
	s.queries = append(s.queries, Query{Name: q.Name, Type: q.Qtype, Net: network, Time: time.Now()})
	fault, truncate, noExtra := s.fault, s.truncateUDP && network == "udp", s.noExtra
	if f, ok := s.typeFaults[q.Qtype]; ok {
		fault = f
	}
	if s.noEDNS && req.IsEdns0() != nil {
		s.mu.Unlock()
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		m.Extra = nil
		w.WriteMsg(m)
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if fault == FaultNone {
		s.answer(m, q, noExtra)
	}
	s.mu.Unlock()

	switch fault {
	case FaultServFail:
		m.Rcode = dns.RcodeServerFailure
	case FaultNXDomain:
		m.Rcode = dns.RcodeNameError
	case FaultNoAnswer:
	case FaultDrop:
		return
	case FaultWrongType:
		m.Answer = []dns.RR{&dns.TXT{Hdr: header(q.Name, dns.TypeTXT, 30), Txt: []string{"garbage"}}}
	case FaultWrongName:
		m.Answer = []dns.RR{wrongName(q.Qtype)}
	case FaultMalformed:
		m.Answer = []dns.RR{&dns.A{Hdr: header(q.Name, dns.TypeA, 30), A: net.IPv4(192, 0, 2, 1)}}
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		w.Write(b[:len(b)-2]) // the last record's data cut short
		return
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if network == "udp" {
		if truncate {
			m.Truncated = true
			m.Answer, m.Ns, m.Extra = nil, nil, nil
		} else {
			size := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
	}
	w.WriteMsg(m)
}

// answer fills m from the zone, following aliases; s.mu is held.
func (s *Server) answer(m *dns.Msg, q dns.Question, noExtra bool) {
	name := dns.CanonicalName(q.Name)
	if _, ok := s.zone[name]; !ok {
		d := s.dnameAbove(name)
		if d == nil {
			m.Rcode = dns.RcodeNameError
			return
		}
		// RFC 6672 3.1: the DNAME, then a CNAME synthesized from it.
		owner := dns.CanonicalName(d.Hdr.Name)
		target := strings.TrimSuffix(name, owner) + dns.CanonicalName(d.Target)
		m.Answer = append(m.Answer, dns.Copy(d))
		if !s.noSynth {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: header(q.Name, dns.TypeCNAME, d.Hdr.Ttl), Target: target})
		}
		name = target
		if _, ok := s.zone[name]; !ok {
			m.Rcode = dns.RcodeNameError
			return
		}
	}
	for range 8 {
		rrs := s.zone[name]
		var cname *dns.CNAME
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
				cname = c
			}
		}
		if cname == nil {
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = dns.CanonicalName(cname.Target)
	}
	if q.Qtype != dns.TypeSRV || noExtra {
		return
	}
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			for _, t := range s.zone[dns.CanonicalName(srv.Target)] {
				if t.Header().Rrtype == dns.TypeA || t.Header().Rrtype == dns.TypeAAAA {
					m.Extra = append(m.Extra, dns.Copy(t))
				}
			}
		}
	}
}

// dnameAbove returns the DNAME record owned by a proper ancestor of name,
// if any; s.mu is held.
func (s *Server) dnameAbove(name string) *dns.DNAME {
	labels := dns.SplitDomainName(name)
	for i := 1; i < len(labels); i++ {
		for _, rr := range s.zone[dns.Fqdn(strings.Join(labels[i:], "."))] {
			if d, ok := rr.(*dns.DNAME); ok {
				return d
			}
		}
	}
	return nil
}

func wrongName(qtype uint16) dns.RR {
	h := header("wrong.invalid.", qtype, 30)
	switch qtype {
	case dns.TypeAAAA:
		return &dns.AAAA{Hdr: h, AAAA: net.ParseIP("2001:db8::1")}
	case dns.TypeSRV:
		return &dns.SRV{Hdr: h, Priority: 1, Weight: 1, Port: 443, Target: "wrong.invalid."}
	default:
		h.Rrtype = dns.TypeA
		return &dns.A{Hdr: h, A: net.IPv4(192, 0, 2, 1)}
	}
}
