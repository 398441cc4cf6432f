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
// Names are fully qualified: no search domain is appended. Queries go over
// UDP with EDNS(0), and again over TCP when the answer is truncated, to the
// servers of /etc/resolv.conf, of WithNameservers, or of the target's
// authority, in order.
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
		servers, err := o.servers(t.Authority)
		if err != nil {
			return nil, err
		}
		d.client = dnsClient{servers: servers, timeout: o.dnsTimeout}
	}
	if d.m, err = newResolverMetrics(o.registerer, kind, t.String()); err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	d.log = o.logger.With("target", t.String())
	return d, nil
}

// servers returns the name servers to ask: the target's authority, else
// WithNameservers, else resolv.conf's.
func (o *options) servers(authority string) ([]string, error) {
	if authority != "" {
		s, err := nameserverAddr(authority)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	if len(o.nameservers) > 0 {
		return o.nameservers, nil
	}
	conf, err := dns.ClientConfigFromFile(o.resolvConf)
	if err != nil {
		return nil, fmt.Errorf("resolver: read name servers: %w", err)
	}
	var servers []string
	for _, s := range conf.Servers {
		servers = append(servers, net.JoinHostPort(s, conf.Port))
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("resolver: no nameserver in %s", o.resolvConf)
	}
	return servers, nil
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

	failures := 0
	for {
		started := time.Now()
		eps, err := d.resolve(ctx)
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

// resolve resolves the target once.
func (d *DNS) resolve(ctx context.Context) ([]Endpoint, error) {
	if d.srv {
		return d.resolveSRV(ctx)
	}
	addrs, err := d.lookupHost(ctx, d.name)
	if err != nil {
		return nil, err
	}
	return hostEndpoints(d.name, d.port, addrs), nil
}

// lookupHost asks for the A and AAAA records of name at once. A family
// without records adds nothing; it fails with ErrNotFound when neither has
// any, and with the first other error of either.
func (d *DNS) lookupHost(ctx context.Context, name string) ([]hostAddr, error) {
	var (
		wg    sync.WaitGroup
		addrs [2][]hostAddr
		errs  [2]error
	)
	for i, qtype := range [2]uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Go(func() {
			r, err := d.client.query(ctx, name, qtype)
			if err == nil {
				addrs[i], err = parseAddrAnswer(r, name, qtype)
				if err != nil && !errors.Is(err, ErrNotFound) {
					err = fmt.Errorf("resolver: dns: %s %s: %w", dns.TypeToString[qtype], name, err)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	nx := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrNotFound):
			nx++
		case err != nil:
			return nil, err
		}
	}
	all := append(addrs[0], addrs[1]...)
	if len(all) == 0 {
		if nx > 0 {
			return nil, fmt.Errorf("resolver: dns: %s does not exist (NXDOMAIN): %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("resolver: dns: %s has no A or AAAA records: %w", name, ErrNotFound)
	}
	return all, nil
}

// resolveSRV resolves the SRV records and their targets' addresses.
func (d *DNS) resolveSRV(ctx context.Context) ([]Endpoint, error) {
	r, err := d.client.query(ctx, d.name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	ans, err := parseSRVAnswer(r, d.name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("resolver: dns: SRV %s does not exist (NXDOMAIN): %w", d.name, ErrNotFound)
		}
		return nil, fmt.Errorf("resolver: dns: SRV %s: %w", d.name, err)
	}
	if len(ans.records) == 0 {
		if ans.unavailable > 0 {
			return nil, fmt.Errorf("resolver: dns: SRV %s: the service is not available (target \".\"): %w", d.name, ErrNotFound)
		}
		return nil, fmt.Errorf("resolver: dns: %s has no SRV records: %w", d.name, ErrNotFound)
	}
	addrs, err := d.lookupTargets(ctx, ans)
	if err != nil {
		return nil, err
	}
	eps := srvEndpoints(d.name, ans.records, addrs, d.o.allSRVPriorities)
	if len(eps) == 0 {
		return nil, fmt.Errorf("resolver: dns: SRV %s: no target has an address: %w", d.name, ErrNotFound)
	}
	return eps, nil
}

// lookupTargets returns the addresses of every SRV target: from the
// additional section, or looked up (a few at a time). A target that does
// not exist or has no address is left out; any other failure fails the
// whole resolution, so that a flaky server never shrinks the set.
func (d *DNS) lookupTargets(ctx context.Context, ans srvAnswer) (map[string][]hostAddr, error) {
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
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
		sem   = make(chan struct{}, maxParallelLookups)
	)
	for _, target := range missing {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			found, err := d.lookupHost(ctx, target)
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
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return addrs, nil
}
