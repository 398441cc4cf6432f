package resolver

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// Schemes of the targets Parse accepts.
const (
	// SchemeEtcd resolves a service registered in etcd: etcd:///api.
	SchemeEtcd = "etcd"
	// SchemeDNS resolves A and AAAA records: dns:///api.example.com:443.
	// The authority, if any, is the name server to ask:
	// dns://10.0.0.53:53/api.example.com:443.
	SchemeDNS = "dns"
	// SchemeDNSSRV resolves SRV records and their targets' addresses:
	// dns+srv:///_api._tcp.example.com. The authority, if any, is the
	// name server to ask.
	SchemeDNSSRV = "dns+srv"
	// SchemeStatic is a fixed list of addresses:
	// static:///10.0.0.1:443,10.0.0.2:443.
	SchemeStatic = "static"
)

// Target is a parsed target string, scheme://[authority]/endpoint, in the
// form gRPC uses for its name resolvers.
type Target struct {
	// Scheme is SchemeEtcd, SchemeDNS, SchemeDNSSRV or SchemeStatic.
	Scheme string
	// Authority is the name server to ask, as an IP address with an
	// optional port, for the dns and dns+srv schemes; empty otherwise (and
	// for those schemes by default: the servers of resolv.conf).
	Authority string
	// Endpoint is what the scheme resolves: the service name (etcd),
	// host:port (dns), the SRV name (dns+srv) or the comma-separated
	// host:port addresses (static).
	Endpoint string
}

// String returns the target in its canonical form, scheme://authority/endpoint.
func (t Target) String() string {
	return t.Scheme + "://" + t.Authority + "/" + t.Endpoint
}

// Parse parses and validates a target such as etcd:///api,
// dns:///api.example.com:443, dns+srv:///_api._tcp.example.com or
// static:///10.0.0.1:443,10.0.0.2:443. Its errors name the problem and wrap
// ErrUnknownScheme for a scheme it does not know and ErrInvalidTarget for
// anything else (ErrInvalidAddress too for a bad static address).
func Parse(target string) (Target, error) {
	bad := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("resolver: target %q: %w: %w", target, fmt.Errorf(format, args...), ErrInvalidTarget)
	}
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok || scheme == "" {
		return bad("want scheme:///endpoint with scheme %s, %s, %s or %s", SchemeEtcd, SchemeDNS, SchemeDNSSRV, SchemeStatic)
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case SchemeEtcd, SchemeDNS, SchemeDNSSRV, SchemeStatic:
	default:
		return Target{}, fmt.Errorf("resolver: target %q: scheme %q is not %s, %s, %s or %s: %w",
			target, scheme, SchemeEtcd, SchemeDNS, SchemeDNSSRV, SchemeStatic, ErrUnknownScheme)
	}
	authority, endpoint, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("missing '/' after the authority (want %s:///endpoint)", scheme)
	}
	if strings.ContainsAny(endpoint, "?#") {
		return bad("query and fragment are not supported")
	}
	if strings.Contains(endpoint, "%") {
		// Percent-decode like a URL path so that escaped names round-trip.
		dec, err := url.PathUnescape(endpoint)
		if err != nil {
			return bad("bad escape: %w", err)
		}
		endpoint = dec
	}
	t := Target{Scheme: scheme, Authority: authority, Endpoint: endpoint}
	if err := t.validate(); err != nil {
		return bad("%w", err)
	}
	return t, nil
}

// validate checks the authority and endpoint for the scheme; its error is
// the bare reason.
func (t Target) validate() error {
	for _, part := range []string{t.Authority, t.Endpoint} {
		if !utf8.ValidString(part) {
			return fmt.Errorf("%q is not valid UTF-8", part)
		}
		if i := strings.IndexFunc(part, unicode.IsControl); i >= 0 {
			return fmt.Errorf("control character %q in %q", part[i], part)
		}
	}
	switch t.Scheme {
	case SchemeEtcd, SchemeStatic:
		if t.Authority != "" {
			return fmt.Errorf("authority %q is not supported by %s (want %s:///...)", t.Authority, t.Scheme, t.Scheme)
		}
	case SchemeDNS, SchemeDNSSRV:
		if t.Authority != "" {
			if _, err := nameserverAddr(t.Authority); err != nil {
				return fmt.Errorf("authority (the name server) %q is not an IP address with an optional port", t.Authority)
			}
		}
	}
	switch t.Scheme {
	case SchemeEtcd:
		return validateService(t.Endpoint)
	case SchemeDNS:
		if t.Endpoint == "" {
			return fmt.Errorf("missing host:port")
		}
		host, _, err := splitHostPort(t.Endpoint)
		if err != nil {
			return err
		}
		if net.ParseIP(host) == nil {
			return validateDomain("host", host)
		}
		return nil
	case SchemeDNSSRV:
		if t.Endpoint == "" {
			return fmt.Errorf("missing SRV name")
		}
		if strings.Contains(t.Endpoint, ":") {
			return fmt.Errorf("SRV name %q has a port; SRV records carry the ports", t.Endpoint)
		}
		return validateDomain("SRV name", t.Endpoint)
	case SchemeStatic:
		_, err := splitStatic(t.Endpoint)
		return err
	}
	return nil
}

// Build returns a resolver for the target. The etcd scheme needs
// WithEtcdClient; the other options configure the resolver the scheme
// names and are ignored by the others.
func (t Target) Build(opts ...Option) (Resolver, error) {
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("resolver: target %q: %w: %w", t, err, ErrInvalidTarget)
	}
	switch t.Scheme {
	case SchemeEtcd:
		o, err := newOptions(opts)
		if err != nil {
			return nil, err
		}
		if o.etcdClient == nil {
			return nil, fmt.Errorf("resolver: target %q: the etcd scheme needs an etcd client (WithEtcdClient)", t)
		}
		return NewEtcd(o.etcdClient, t.Endpoint, opts...)
	case SchemeDNS, SchemeDNSSRV:
		return newDNS(t, opts)
	case SchemeStatic:
		addrs, _ := splitStatic(t.Endpoint)
		return NewStatic(addrs...)
	}
	return nil, fmt.Errorf("resolver: target %q: scheme %q: %w", t, t.Scheme, ErrUnknownScheme)
}

// New parses target and builds its resolver:
//
//	r, err := resolver.New("etcd:///api", resolver.WithEtcdClient(cli))
//	r, err := resolver.New("dns+srv:///_api._tcp.example.com")
//
// It is Parse followed by Target.Build.
func New(target string, opts ...Option) (Resolver, error) {
	t, err := Parse(target)
	if err != nil {
		return nil, err
	}
	return t.Build(opts...)
}

// validateService checks an etcd service name: the registry's key schema
// puts it between two slashes.
func validateService(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("missing service name")
	case strings.Contains(s, "/"):
		return fmt.Errorf("service %q contains '/'", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("service %q is not valid UTF-8", s)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("service %q has leading or trailing space", s)
	}
	return nil
}

// validateDomain checks a DNS name given in a target.
func validateDomain(what, name string) error {
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return fmt.Errorf("%s %q is not a valid domain name", what, name)
	}
	return nil
}

// splitHostPort splits host:port and checks that both are there and the
// port is a number from 1 to 65535. Its errors name the address and wrap
// ErrInvalidAddress.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return "", "", fmt.Errorf("address %q: missing port: %w", addr, ErrInvalidAddress)
		}
		return "", "", fmt.Errorf("address %q is not host:port: %w", addr, ErrInvalidAddress)
	}
	if host == "" {
		return "", "", fmt.Errorf("address %q: missing host: %w", addr, ErrInvalidAddress)
	}
	if _, err := parsePort(port); err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	return host, port, nil
}

// parsePort parses a port from 1 to 65535.
func parsePort(port string) (uint16, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535: %w", port, ErrInvalidAddress)
	}
	return uint16(p), nil
}

// splitStatic splits and checks a static target's comma-separated list.
func splitStatic(list string) ([]string, error) {
	if list == "" {
		return nil, fmt.Errorf("missing addresses: %w", ErrInvalidAddress)
	}
	addrs := strings.Split(list, ",")
	if err := validateStatic(addrs); err != nil {
		return nil, err
	}
	return addrs, nil
}
