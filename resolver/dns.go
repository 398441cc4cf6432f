package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxParallelLookups bounds the address lookups of SRV targets in flight
// at once, so that a large SRV set does not burst at the name server.
const maxParallelLookups = 8

// DNS is a Resolver for DNS names, with github.com/miekg/dns:
//
//   - a host:port target (NewDNS, dns:///api.example.com:443) resolves the
//     host's A and AAAA records, both families, into one endpoint per
//     address on the target's port; a host that is an IP address is
//     delivered as it is;
//   - an SRV target (NewDNSSRV, dns+srv:///_api._tcp.example.com) resolves
//     the SRV records and each target's addresses, taken from the
//     additional section when the server put them there and looked up
//     otherwise. An endpoint's Weight is the SRV weight (0, the RFC's "very
//     small share", counts as the default weight) and its Origin.Priority
//     the SRV priority. By default only the most preferred priority group
//     that has addresses is delivered, the others being backups as RFC 2782
//     describes; WithAllSRVPriorities delivers every group.
//
// The A and AAAA queries are answered independently: when one family's
// query fails (dropped, SERVFAIL, garbage) while the other answers, the
// answer stands with the failing family's last good addresses, or none
// yet; the failure is logged (at WARN when new) and that family asked
// again with backoff. Aliases are followed within an answer: CNAME
// records, and DNAME records (RFC 6672) whether or not the server added
// the CNAME it synthesizes from one.
//
// Names are fully qualified: no search domain is appended. Queries go over
// UDP with EDNS(0), and again over TCP when the answer is truncated, to the
// servers of the target's authority, of WithNameservers, or of
// /etc/resolv.conf (WithResolvConf), in order. The resolv.conf file is
// read again whenever it changes, so a new name server is used without a
// restart; a changed file that names no server, or cannot be read, is
// reported once and the previous servers stay.
//
// The records are resolved again when their smallest TTL runs out, clamped
// to WithRefreshInterval (1 s to 5 min by default), and on ResolveNow.
// After a failure — a timeout, SERVFAIL, NXDOMAIN or an empty answer after
// a success, a garbage answer — Watch reports the error with the last good
// set and tries again with backoff (never sooner than the minimum refresh
// interval). NXDOMAIN or an empty answer at the very first resolution is an
// error (wrapping ErrNotFound) with an empty set.
//
// A DNS holds no goroutine of its own: each Watch call runs on its caller's
// goroutine (with short-lived helpers for parallel queries that end before
// each resolution does). It is safe for concurrent use.
type DNS struct {
	target Target
	srv    bool
	name   string     // fully qualified name queried: the host or the SRV name
	port   string     // host:port targets
	fixed  []Endpoint // an IP address target: nothing to query
	client dnsClient
	o      options
	log    *slog.Logger
	m      *resolverMetrics

	mu    sync.Mutex
	kicks map[chan struct{}]struct{} // one per running Watch, for ResolveNow
}

// NewDNS returns a resolver for the A and AAAA records of host, given as
// host:port. Options: WithNameservers, WithResolvConf, WithDNSTimeout,
// WithRefreshInterval, WithBackoff, WithLogger, WithRegisterer.
func NewDNS(hostport string, opts ...Option) (*DNS, error) {
	return newDNSTarget(Target{Scheme: SchemeDNS, Endpoint: hostport}, opts)
}

// NewDNSSRV returns a resolver for the SRV records of name, such as
// _api._tcp.example.com. Options: those of NewDNS and
// WithAllSRVPriorities.
func NewDNSSRV(name string, opts ...Option) (*DNS, error) {
	return newDNSTarget(Target{Scheme: SchemeDNSSRV, Endpoint: name}, opts)
}

func newDNSTarget(t Target, opts []Option) (*DNS, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("resolver: target %q: %w: %w", t, err, ErrInvalidTarget)
	}
	return newDNS(t, opts)
}

// newDNS builds the resolver of a validated dns or dns+srv target.
func newDNS(t Target, opts []Option) (*DNS, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	d := &DNS{target: t, srv: t.Scheme == SchemeDNSSRV, o: o, kicks: make(map[chan struct{}]struct{})}
	kind := kindDNS
	if d.srv {
		kind = kindSRV
		d.name = dns.Fqdn(t.Endpoint)
	} else {
		host, port, _ := net.SplitHostPort(t.Endpoint)
		d.port = port
		if ip, err := netip.ParseAddr(host); err == nil {
			d.fixed = hostEndpoints(host, port, []hostAddr{{ip: ip.Unmap()}})
		}
		d.name = dns.Fqdn(host)
	}
	if d.fixed == nil {
		d.client = dnsClient{timeout: o.dnsTimeout}
		switch {
		case t.Authority != "":
			s, err := nameserverAddr(t.Authority)
			if err != nil {
				return nil, err
			}
			d.client.fixed = []string{s}
		case len(o.nameservers) > 0:
			d.client.fixed = o.nameservers
		default:
			if d.client.conf, err = newResolvConf(o.resolvConf, o.resolvConfPort, o.logger); err != nil {
				return nil, err
			}
		}
	}
	if d.m, err = newResolverMetrics(o.registerer, kind, t.String()); err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	d.log = o.logger.With("target", t.String())
	return d, nil
}

// Watch implements Resolver. It returns ctx's error when ctx ends.
func (d *DNS) Watch(ctx context.Context, update func(State)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n := newNotifier(update, d.m)
	if d.fixed != nil {
		n.good(d.fixed)
		<-ctx.Done()
		return ctx.Err()
	}
	kick := make(chan struct{}, 1)
	d.mu.Lock()
	d.kicks[kick] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.kicks, kick)
		d.mu.Unlock()
	}()

	fam := newFamilies()
	failures, partials := 0, 0
	for {
		started := time.Now()
		eps, partial, err := d.resolve(ctx, fam)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var wait time.Duration
		if err != nil {
			if errors.Is(err, ErrBadAnswer) {
				d.m.decodeFailures.Inc()
			}
			level := slog.LevelDebug
			if n.fail(err) {
				level = slog.LevelWarn
			}
			d.log.Log(ctx, level, "resolver: dns resolution failed; keeping the last set", "err", err, "endpoints", len(n.last))
			wait = d.o.backoff.Delay(failures)
			failures++
		} else {
			failures = 0
			if n.good(eps) {
				d.log.Debug("resolver: update", "endpoints", len(eps), "ttl", minTTL(eps))
			}
			wait = minTTL(eps)
			if partial {
				// Ask the failing family again with backoff, not only
				// when the other family's TTL runs out.
				wait = min(wait, d.o.backoff.Delay(partials))
				partials++
			} else {
				partials = 0
			}
		}
		wait = min(max(wait, d.o.minRefresh), d.o.maxRefresh)
		if err := d.wait(ctx, kick, started, wait); err != nil {
			return err
		}
	}
}

// wait waits until the next resolution is due: after wait, or at a
// ResolveNow but no sooner than the minimum interval after started.
func (d *DNS) wait(ctx context.Context, kick <-chan struct{}, started time.Time, wait time.Duration) error {
	due := started.Add(wait)
	t := time.NewTimer(time.Until(due))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case <-kick:
			if soon := started.Add(d.o.minRefresh); soon.Before(due) {
				due = soon
				t.Reset(time.Until(due))
			}
		}
	}
}

// ResolveNow asks every running Watch to resolve again soon: at once, or
// when the minimum refresh interval since its previous resolution has
// passed. It never blocks.
func (d *DNS) ResolveNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// resolve resolves the target once. partial reports that an address
// family failed and its last addresses (or none) stand in for its answer.
func (d *DNS) resolve(ctx context.Context, fam *families) (eps []Endpoint, partial bool, err error) {
	fam.start()
	defer fam.sweep()
	if d.srv {
		return d.resolveSRV(ctx, fam)
	}
	addrs, partial, err := d.lookupHost(ctx, d.name, fam)
	if err != nil {
		return nil, false, err
	}
	return hostEndpoints(d.name, d.port, addrs), partial, nil
}

// lookupHost asks for the A and AAAA records of name at once. The two
// families are answered independently: a family whose query fails (an
// AAAA query dropped or refused while A answers, as some resolvers and
// middleboxes do) contributes its last good addresses from fam, or none,
// and the other family's answer stands; partial reports that. A family
// without records adds nothing. It fails with ErrNotFound when neither has
// any, and with the failure when no family answered with addresses and one
// failed (the caller keeps its last set then).
func (d *DNS) lookupHost(ctx context.Context, name string, fam *families) (addrs []hostAddr, partial bool, err error) {
	var (
		wg      sync.WaitGroup
		answers [2][]hostAddr
		errs    [2]error
	)
	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	for i, qtype := range qtypes {
		wg.Go(func() {
			r, err := d.client.query(ctx, name, qtype)
			if err == nil {
				answers[i], err = parseAddrAnswer(r, name, qtype)
				if err != nil && !errors.Is(err, ErrNotFound) {
					err = fmt.Errorf("resolver: dns: %s %s: %w", dns.TypeToString[qtype], name, err)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	var failed error
	nx, failures := 0, 0
	for i, qtype := range qtypes {
		key := familyKey{name: dns.CanonicalName(name), qtype: qtype}
		switch err := errs[i]; {
		case err == nil:
			addrs = append(addrs, answers[i]...)
			d.familyAnswered(ctx, fam, key, answers[i])
		case errors.Is(err, ErrNotFound):
			nx++
			d.familyAnswered(ctx, fam, key, nil)
		default:
			failures++
			if failed == nil {
				failed = err
			}
			addrs = append(addrs, d.familyFailed(ctx, fam, key, err)...)
		}
	}
	if failures == len(qtypes) || (failures > 0 && len(addrs) == 0) {
		return nil, false, failed
	}
	if len(addrs) == 0 {
		if nx > 0 {
			return nil, false, fmt.Errorf("resolver: dns: %s does not exist (NXDOMAIN): %w", name, ErrNotFound)
		}
		return nil, false, fmt.Errorf("resolver: dns: %s has no A or AAAA records: %w", name, ErrNotFound)
	}
	return addrs, failures > 0, nil
}

// familyAnswered records a family's good answer (nil for none).
func (d *DNS) familyAnswered(ctx context.Context, fam *families, key familyKey, addrs []hostAddr) {
	fam.mu.Lock()
	_, wasFailing := fam.failing[key]
	delete(fam.failing, key)
	fam.last[key] = addrs
	fam.seen[key] = fam.gen
	fam.mu.Unlock()
	if wasFailing {
		d.log.Log(ctx, slog.LevelInfo, "resolver: dns: address family answers again", "name", key.name, "family", dns.TypeToString[key.qtype], "addresses", len(addrs))
	}
}

// familyFailed records a family's failure and returns its last good
// addresses, if any. A failure is logged at WARN when it is new for the
// family, and quietly while it repeats.
func (d *DNS) familyFailed(ctx context.Context, fam *families, key familyKey, err error) []hostAddr {
	fam.mu.Lock()
	news := fam.failing[key] != err.Error()
	fam.failing[key] = err.Error()
	last := fam.last[key]
	fam.seen[key] = fam.gen
	fam.mu.Unlock()
	level := slog.LevelDebug
	if news {
		level = slog.LevelWarn
	}
	d.log.Log(ctx, level, "resolver: dns: one address family fails; the other one's answer stands, with this one's last addresses",
		"name", key.name, "family", dns.TypeToString[key.qtype], "kept", len(last), "err", err)
	return last
}

// familyKey names one address family of one name.
type familyKey struct {
	name  string // canonical
	qtype uint16 // dns.TypeA or dns.TypeAAAA
}

// families is what one Watch call remembers of the address families it
// looked up: the last good answer of each, used while that family fails,
// and the failure last logged. Names not looked up in a resolution are
// forgotten after it.
type families struct {
	mu      sync.Mutex
	gen     int // the resolution under way
	last    map[familyKey][]hostAddr
	failing map[familyKey]string
	seen    map[familyKey]int // the last resolution that looked the key up
}

func newFamilies() *families {
	return &families{last: make(map[familyKey][]hostAddr), failing: make(map[familyKey]string), seen: make(map[familyKey]int)}
}

// start begins a resolution.
func (f *families) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
}

// sweep forgets the names the last resolution did not look up (SRV targets
// that left the set).
func (f *families) sweep() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, g := range f.seen {
		if g != f.gen {
			delete(f.seen, k)
			delete(f.last, k)
			delete(f.failing, k)
		}
	}
}

// resolveSRV resolves the SRV records and their targets' addresses.
func (d *DNS) resolveSRV(ctx context.Context, fam *families) ([]Endpoint, bool, error) {
	r, err := d.client.query(ctx, d.name, dns.TypeSRV)
	if err != nil {
		return nil, false, err
	}
	ans, err := parseSRVAnswer(r, d.name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, false, fmt.Errorf("resolver: dns: SRV %s does not exist (NXDOMAIN): %w", d.name, ErrNotFound)
		}
		return nil, false, fmt.Errorf("resolver: dns: SRV %s: %w", d.name, err)
	}
	if len(ans.records) == 0 {
		if ans.unavailable > 0 {
			return nil, false, fmt.Errorf("resolver: dns: SRV %s: the service is not available (target \".\"): %w", d.name, ErrNotFound)
		}
		return nil, false, fmt.Errorf("resolver: dns: %s has no SRV records: %w", d.name, ErrNotFound)
	}
	addrs, partial, err := d.lookupTargets(ctx, ans, fam)
	if err != nil {
		return nil, false, err
	}
	eps := srvEndpoints(d.name, ans.records, addrs, d.o.allSRVPriorities)
	if len(eps) == 0 {
		return nil, false, fmt.Errorf("resolver: dns: SRV %s: no target has an address: %w", d.name, ErrNotFound)
	}
	return eps, partial, nil
}

// lookupTargets returns the addresses of every SRV target: from the
// additional section, or looked up (a few at a time). A target that does
// not exist or has no address is left out; any other failure fails the
// whole resolution, so that a flaky server never shrinks the set (one
// address family failing for a target is not such a failure: see
// lookupHost).
func (d *DNS) lookupTargets(ctx context.Context, ans srvAnswer, fam *families) (map[string][]hostAddr, bool, error) {
	addrs := make(map[string][]hostAddr)
	var missing []string
	for _, rec := range ans.records {
		if _, done := addrs[rec.Target]; done {
			continue
		}
		if extra, ok := ans.extra[rec.Target]; ok {
			addrs[rec.Target] = extra
			continue
		}
		addrs[rec.Target] = nil
		missing = append(missing, rec.Target)
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		first   error
		partial bool
		sem     = make(chan struct{}, maxParallelLookups)
	)
	for _, target := range missing {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			found, part, err := d.lookupHost(ctx, target, fam)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrNotFound):
				d.log.Debug("resolver: SRV target has no address", "target", target, "err", err)
			case err != nil:
				if first == nil {
					first = err
				}
			default:
				addrs[target] = found
				partial = partial || part
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, false, first
	}
	return addrs, partial, nil
}
