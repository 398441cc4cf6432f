package resolver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ednsUDPSize is the UDP payload size advertised with EDNS(0): 1232 bytes
// fits any path's MTU without IP fragmentation (the DNS Flag Day 2020
// value). Larger answers come back truncated and are asked again over TCP.
const ednsUDPSize = 1232

// maxCNAMEChain bounds how many aliases an answer may chain, as resolvers
// do against loops.
const maxCNAMEChain = 8

// dnsClient sends queries to a list of name servers.
type dnsClient struct {
	fixed   []string    // host:port, tried in order, unless conf is set
	conf    *resolvConf // the servers of a resolv.conf file, followed as it changes
	timeout time.Duration
}

// servers returns the name servers to ask, in order.
func (c *dnsClient) servers() []string {
	if c.conf != nil {
		return c.conf.current()
	}
	return c.fixed
}

// query asks the servers in turn for (name, qtype) and returns the first
// answer that is a well-formed NOERROR or NXDOMAIN response to the
// question. A server that times out, fails (SERVFAIL, REFUSED…), sends a
// message that does not parse or answers another question is skipped for
// the next; when all fail, the last error is returned. A truncated UDP
// answer is asked again over TCP; a FORMERR, again without EDNS(0).
func (c *dnsClient) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(ednsUDPSize, false)
	var last error
	servers := c.servers()
	for _, server := range servers {
		r, err := c.exchange(ctx, server, q)
		if err == nil && r.Rcode == dns.RcodeFormatError {
			// An old server that does not know EDNS(0) (RFC 6891 6.2.2):
			// ask again without it.
			plain := q.Copy()
			plain.Extra = nil
			r, err = c.exchange(ctx, server, plain)
		}
		if err == nil {
			if err = checkResponse(r, name, qtype); err == nil {
				return r, nil
			}
			err = fmt.Errorf("resolver: dns: %s %s @%s: %w", dns.TypeToString[qtype], name, server, err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = err
	}
	if len(servers) > 1 {
		return nil, fmt.Errorf("%w (all %d name servers failed)", last, len(servers))
	}
	return nil, last
}

// exchange sends q to one server over UDP, and over TCP when the UDP answer
// is truncated.
func (c *dnsClient) exchange(ctx context.Context, server string, q *dns.Msg) (*dns.Msg, error) {
	r, err := c.exchangeNet(ctx, server, q, "udp")
	if err != nil || !r.Truncated {
		return r, err
	}
	return c.exchangeNet(ctx, server, q, "tcp")
}

func (c *dnsClient) exchangeNet(ctx context.Context, server string, q *dns.Msg, network string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl := &dns.Client{Net: network, Timeout: c.timeout}
	what := func() string {
		return fmt.Sprintf("resolver: dns: %s %s @%s/%s", dns.TypeToString[q.Question[0].Qtype], q.Question[0].Name, server, network)
	}
	co, err := cl.DialContext(qctx, server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what(), err)
	}
	defer co.Close()
	// miekg/dns bounds the exchange with deadlines only: closing the
	// connection is what ends it at once when ctx is cancelled.
	stop := context.AfterFunc(qctx, func() { co.Close() })
	defer stop()
	r, _, err := cl.ExchangeWithConnContext(qctx, q, co)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if isTransportErr(err) {
			return nil, fmt.Errorf("%s: %w", what(), err)
		}
		return nil, fmt.Errorf("%s: %w: %w", what(), ErrBadAnswer, err)
	}
	return r, nil
}

// isTransportErr tells network failures (timeouts, refused or reset
// connections) from a message that arrived and could not be parsed.
func isTransportErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// rcodeError is a response code other than NOERROR and NXDOMAIN.
type rcodeError int

func (e rcodeError) Error() string {
	if s, ok := dns.RcodeToString[int(e)]; ok {
		return "server answered " + s
	}
	return "server answered rcode " + strconv.Itoa(int(e))
}

// checkResponse checks that r is a NOERROR or NXDOMAIN response to a query
// for name and qtype. Garbage wraps ErrBadAnswer; other response codes are
// rcodeErrors.
func checkResponse(r *dns.Msg, name string, qtype uint16) error {
	switch {
	case !r.Response:
		return fmt.Errorf("%w: not a response", ErrBadAnswer)
	case r.Opcode != dns.OpcodeQuery:
		return fmt.Errorf("%w: opcode %d is not QUERY", ErrBadAnswer, r.Opcode)
	case r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError:
		return rcodeError(r.Rcode)
	case len(r.Question) != 1:
		return fmt.Errorf("%w: %d questions in the answer, want 1", ErrBadAnswer, len(r.Question))
	}
	q := r.Question[0]
	if !sameName(q.Name, name) || q.Qtype != qtype || q.Qclass != dns.ClassINET {
		return fmt.Errorf("%w: answer to %s %s, want %s %s", ErrBadAnswer,
			dns.TypeToString[q.Qtype], q.Name, dns.TypeToString[qtype], name)
	}
	return nil
}

func sameName(a, b string) bool { return dns.CanonicalName(a) == dns.CanonicalName(b) }

// hostAddr is one address of a name with the smallest TTL on the way to it
// (aliases included).
type hostAddr struct {
	ip  netip.Addr
	ttl uint32
}

// parseAddrAnswer returns the addresses in r, the answer to an A or AAAA
// query (qtype) for name, following aliases (CNAME) within the answer. A
// name without records of the type (NODATA) gives none and no error;
// NXDOMAIN gives an error wrapping ErrNotFound. Records of another type,
// or for a name that is neither name nor one of its aliases, or a malformed
// address, make the whole answer garbage: an error wrapping ErrBadAnswer.
func parseAddrAnswer(r *dns.Msg, name string, qtype uint16) ([]hostAddr, error) {
	if err := checkResponse(r, name, qtype); err != nil {
		return nil, err
	}
	if r.Rcode == dns.RcodeNameError {
		return nil, fmt.Errorf("%s: NXDOMAIN: %w", name, ErrNotFound)
	}
	aliases, err := aliasChain(r.Answer, name)
	if err != nil {
		return nil, err
	}
	var out []hostAddr
	for _, rr := range r.Answer {
		h := rr.Header()
		ttl := min(h.Ttl, aliases[dns.CanonicalName(h.Name)])
		switch v := rr.(type) {
		case *dns.CNAME, *dns.DNAME, *dns.RRSIG:
		case *dns.A:
			if qtype != dns.TypeA {
				return nil, unexpected(rr, qtype)
			}
			ip, ok := netip.AddrFromSlice(v.A)
			if !ok || !ip.Unmap().Is4() {
				return nil, fmt.Errorf("%w: malformed A record for %s", ErrBadAnswer, h.Name)
			}
			out = append(out, hostAddr{ip.Unmap(), ttl})
		case *dns.AAAA:
			if qtype != dns.TypeAAAA {
				return nil, unexpected(rr, qtype)
			}
			ip, ok := netip.AddrFromSlice(v.AAAA)
			if !ok || !ip.Is6() {
				return nil, fmt.Errorf("%w: malformed AAAA record for %s", ErrBadAnswer, h.Name)
			}
			out = append(out, hostAddr{ip, ttl})
		default:
			return nil, unexpected(rr, qtype)
		}
	}
	return dedupAddrs(out), nil
}

// srvRecord is one usable SRV record, with the smallest TTL on the way to
// it.
type srvRecord struct {
	Priority, Weight, Port uint16
	Target                 string // canonical, fully qualified
	TTL                    uint32
}

// srvAnswer is what an SRV answer holds: the records, and the target
// addresses the server added in the additional section.
type srvAnswer struct {
	records []srvRecord
	extra   map[string][]hostAddr // by canonical target name
	// unavailable counts records with target ".": the service is
	// decidedly not available there (RFC 2782).
	unavailable int
}

// parseSRVAnswer returns the SRV records in r, the answer to an SRV query
// for name, and the addresses of their targets found in the additional
// section. Errors are as for parseAddrAnswer; an SRV record with port 0 is
// garbage too.
func parseSRVAnswer(r *dns.Msg, name string) (srvAnswer, error) {
	var ans srvAnswer
	if err := checkResponse(r, name, dns.TypeSRV); err != nil {
		return ans, err
	}
	if r.Rcode == dns.RcodeNameError {
		return ans, fmt.Errorf("%s: NXDOMAIN: %w", name, ErrNotFound)
	}
	aliases, err := aliasChain(r.Answer, name)
	if err != nil {
		return ans, err
	}
	targets := make(map[string]bool)
	for _, rr := range r.Answer {
		h := rr.Header()
		switch v := rr.(type) {
		case *dns.CNAME, *dns.DNAME, *dns.RRSIG:
		case *dns.SRV:
			if v.Target == "." {
				ans.unavailable++
				continue
			}
			if v.Port == 0 {
				return ans, fmt.Errorf("%w: SRV record %s -> %s has port 0", ErrBadAnswer, h.Name, v.Target)
			}
			target := dns.CanonicalName(v.Target)
			if _, ok := dns.IsDomainName(target); !ok {
				return ans, fmt.Errorf("%w: SRV target %q is not a domain name", ErrBadAnswer, v.Target)
			}
			targets[target] = true
			ans.records = append(ans.records, srvRecord{
				Priority: v.Priority, Weight: v.Weight, Port: v.Port, Target: target,
				TTL: min(h.Ttl, aliases[dns.CanonicalName(h.Name)]),
			})
		default:
			return ans, unexpected(rr, dns.TypeSRV)
		}
	}
	// The additional section is a hint: take the addresses of our
	// targets, ignore the rest (OPT and anything else).
	for _, rr := range r.Extra {
		h := rr.Header()
		target := dns.CanonicalName(h.Name)
		if !targets[target] || h.Class != dns.ClassINET {
			continue
		}
		var ip netip.Addr
		var ok bool
		switch v := rr.(type) {
		case *dns.A:
			ip, ok = netip.AddrFromSlice(v.A)
			ip = ip.Unmap()
			ok = ok && ip.Is4()
		case *dns.AAAA:
			ip, ok = netip.AddrFromSlice(v.AAAA)
			ok = ok && ip.Is6()
		default:
			continue
		}
		if !ok {
			return ans, fmt.Errorf("%w: malformed %s record for %s in the additional section", ErrBadAnswer, dns.TypeToString[h.Rrtype], h.Name)
		}
		if ans.extra == nil {
			ans.extra = make(map[string][]hostAddr)
		}
		ans.extra[target] = append(ans.extra[target], hostAddr{ip, h.Ttl})
	}
	for t, addrs := range ans.extra {
		ans.extra[t] = dedupAddrs(addrs)
	}
	return ans, nil
}

// aliasChain checks the owner names and classes of an answer section and
// returns the names it may speak of: name and the aliases it leads to
// through CNAME records, and through DNAME records (RFC 6672) for which the
// server sent no synthesized CNAME, each with the smallest TTL of the
// aliases on the way there. A DNAME record is accepted when its owner is
// a proper ancestor of a name of the chain.
func aliasChain(answer []dns.RR, name string) (map[string]uint32, error) {
	cur := dns.CanonicalName(name)
	chain := map[string]uint32{cur: math.MaxUint32}
	for hops := 0; ; hops++ {
		var next string
		var ttl uint32
		if c := cnameOf(answer, cur); c != nil {
			next, ttl = dns.CanonicalName(c.Target), c.Hdr.Ttl
		} else if d := dnameAbove(answer, cur); d != nil {
			owner := dns.CanonicalName(d.Hdr.Name)
			next, ttl = strings.TrimSuffix(cur, owner)+dns.CanonicalName(d.Target), d.Hdr.Ttl
			if _, ok := dns.IsDomainName(next); !ok || len(next) > 255 {
				return nil, fmt.Errorf("%w: DNAME %s -> %s makes %s too long a name", ErrBadAnswer, owner, d.Target, cur)
			}
		} else {
			break
		}
		if _, loop := chain[next]; loop {
			return nil, fmt.Errorf("%w: alias loop at %s", ErrBadAnswer, next)
		}
		if hops == maxCNAMEChain {
			return nil, fmt.Errorf("%w: alias chain from %s longer than %d", ErrBadAnswer, name, maxCNAMEChain)
		}
		chain[next] = min(chain[cur], ttl)
		cur = next
	}
	for _, rr := range answer {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("%w: %s record for %s is not of class IN", ErrBadAnswer, dns.TypeToString[h.Rrtype], h.Name)
		}
		if _, ok := rr.(*dns.DNAME); ok {
			if !aboveChain(chain, dns.CanonicalName(h.Name)) {
				return nil, fmt.Errorf("%w: DNAME record for %s, which is above neither %s nor an alias of it",
					ErrBadAnswer, h.Name, name)
			}
			continue
		}
		if _, ok := chain[dns.CanonicalName(h.Name)]; !ok {
			return nil, fmt.Errorf("%w: %s record for %s, which is neither %s nor an alias of it",
				ErrBadAnswer, dns.TypeToString[h.Rrtype], h.Name, name)
		}
	}
	return chain, nil
}

// dnameAbove returns the DNAME record of the answer owned by a proper
// ancestor of name, the closest one if several.
func dnameAbove(answer []dns.RR, name string) *dns.DNAME {
	var best *dns.DNAME
	for _, rr := range answer {
		d, ok := rr.(*dns.DNAME)
		if !ok {
			continue
		}
		owner := dns.CanonicalName(d.Hdr.Name)
		if owner != name && dns.IsSubDomain(owner, name) && (best == nil || dns.CountLabel(owner) > dns.CountLabel(best.Hdr.Name)) {
			best = d
		}
	}
	return best
}

// aboveChain reports whether owner is a proper ancestor of a name of the
// chain.
func aboveChain(chain map[string]uint32, owner string) bool {
	for n := range chain {
		if n != owner && dns.IsSubDomain(owner, n) {
			return true
		}
	}
	return false
}

// cnameOf returns the CNAME record owned by name, if any.
func cnameOf(answer []dns.RR, name string) *dns.CNAME {
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok && dns.CanonicalName(c.Hdr.Name) == name {
			return c
		}
	}
	return nil
}

func unexpected(rr dns.RR, qtype uint16) error {
	h := rr.Header()
	return fmt.Errorf("%w: unexpected %s record for %s in the answer to a %s query",
		ErrBadAnswer, dns.TypeToString[h.Rrtype], h.Name, dns.TypeToString[qtype])
}

// dedupAddrs removes repeated addresses, keeping the smallest TTL.
func dedupAddrs(addrs []hostAddr) []hostAddr {
	slices.SortFunc(addrs, func(a, b hostAddr) int {
		return cmp.Or(a.ip.Compare(b.ip), cmp.Compare(a.ttl, b.ttl))
	})
	return slices.CompactFunc(addrs, func(a, b hostAddr) bool { return a.ip == b.ip })
}

// hostEndpoints turns the addresses of a host into endpoints on port.
func hostEndpoints(name, port string, addrs []hostAddr) []Endpoint {
	eps := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		kind := "dns-aaaa"
		if a.ip.Is4() {
			kind = "dns-a"
		}
		eps = append(eps, Endpoint{
			Addr:   net.JoinHostPort(a.ip.String(), port),
			Origin: Origin{Kind: kind, Name: name, TTL: ttlDuration(a.ttl)},
		})
	}
	SortEndpoints(eps)
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr })
}

// srvEndpoints turns SRV records and their targets' addresses into
// endpoints: one per address of a target, on the record's port, with the
// record's weight (0, the RFC's "very small share", is our default weight)
// and priority. Unless all is set, only the lowest-numbered priority that
// has an address is kept (RFC 2782: a client must try the most preferred
// group it can reach; the other groups are backups). An address reached
// through several records keeps the most preferred one (lowest priority,
// then highest weight).
func srvEndpoints(name string, records []srvRecord, addrs map[string][]hostAddr, all bool) []Endpoint {
	var eps []Endpoint
	best := -1
	for _, rec := range records {
		for _, a := range addrs[rec.Target] {
			eps = append(eps, Endpoint{
				Addr:   net.JoinHostPort(a.ip.String(), strconv.Itoa(int(rec.Port))),
				Weight: uint32(rec.Weight),
				Origin: Origin{Kind: "dns-srv", Name: name, TTL: ttlDuration(min(rec.TTL, a.ttl)), Priority: rec.Priority},
			})
			if best < 0 || int(rec.Priority) < best {
				best = int(rec.Priority)
			}
		}
	}
	if !all {
		eps = slices.DeleteFunc(eps, func(e Endpoint) bool { return int(e.Origin.Priority) != best })
	}
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Addr, b.Addr),
			cmp.Compare(a.Origin.Priority, b.Origin.Priority),
			cmp.Compare(b.Weight, a.Weight))
	})
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr })
}

func ttlDuration(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

// minTTL returns the smallest Origin.TTL of a non-empty set.
func minTTL(eps []Endpoint) time.Duration {
	d := eps[0].Origin.TTL
	for _, e := range eps[1:] {
		d = min(d, e.Origin.TTL)
	}
	return d
}
