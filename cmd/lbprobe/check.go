package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// Check kinds accepted by --check, as regagent's.
var checkKinds = []string{"tcp", "http", "https", "grpc", "tls"}

// Defaults of the probing flags.
const (
	// defaultCheck is the check most services answer: a GET of /.
	defaultCheck = "http"
	// defaultCount gives a minimum, an average and a loss figure while
	// taking well under a second on a healthy service.
	defaultCount = 5
	// defaultProbeInterval spaces the checks of one endpoint so that they
	// sample a little time rather than one burst.
	defaultProbeInterval = 100 * time.Millisecond
	// defaultWatchInterval is the watch command's time between checks:
	// a person watching notices a change within a second or two.
	defaultWatchInterval = time.Second
	// maxCount bounds --count: more checks per endpoint say nothing new.
	maxCount = 10000
	// defaultResolveTimeout bounds the wait for the first endpoint set.
	defaultResolveTimeout = 5 * time.Second
)

// checkFlags configure the check run against every endpoint.
type checkFlags struct {
	kind        string
	timeout     durationValue
	interval    durationValue
	path        string
	grpcService string
	tls         bool

	tlsCA, tlsCert, tlsKey, tlsServerName string
}

func (c *checkFlags) register(fs *flag.FlagSet, interval time.Duration) {
	c.timeout = durationValue(probe.DefaultTimeout)
	c.interval = durationValue(interval)
	fs.StringVar(&c.kind, "check", defaultCheck, "check run against every endpoint: "+strings.Join(checkKinds, "|"))
	fs.Var(&c.timeout, "timeout", "timeout of one check")
	fs.Var(&c.interval, "interval", "time between two checks of one endpoint")
	fs.StringVar(&c.path, "path", "/", "request path (and query) of the http and https checks")
	fs.StringVar(&c.grpcService, "check-grpc-service", "", "service name asked about by the grpc check (default: the whole server)")
	fs.BoolVar(&c.tls, "tls", false, "also complete a TLS handshake with every endpoint for the TLS column (implied by https and tls); makes the grpc check use TLS")
	fs.StringVar(&c.tlsCA, "check-cacert", "", "PEM CAs that verify the endpoints' certificates (default: the system roots)")
	fs.StringVar(&c.tlsCert, "check-cert", "", "PEM client certificate presented to the endpoints (with --check-key)")
	fs.StringVar(&c.tlsKey, "check-key", "", "PEM private key of --check-cert")
	fs.StringVar(&c.tlsServerName, "check-server-name", "", "name verified against the endpoints' certificates (default: the DNS name of a dns:/// target, else the endpoint's host)")
}

// checkSpec is a validated check: what to run against each address.
type checkSpec struct {
	kind     string
	timeout  time.Duration
	interval time.Duration
	checker  probe.Checker
	// handshake, when set, fills the TLS column: for the tls check it is
	// the check itself, otherwise one extra handshake after the checks.
	handshake *probe.TLSHandshake
	// maxRT, when set, judges the checks by an endpoint breaker (--max-rt).
	maxRT time.Duration
}

// spec validates the flags for target t.
func (c *checkFlags) spec(t resolver.Target) (checkSpec, error) {
	s := checkSpec{kind: c.kind, timeout: time.Duration(c.timeout), interval: time.Duration(c.interval)}
	if !slices.Contains(checkKinds, c.kind) {
		return s, usagef("--check %q: want one of %s", c.kind, strings.Join(checkKinds, ", "))
	}
	if s.timeout <= 0 {
		return s, usagef("--timeout must be positive, not %v", s.timeout)
	}
	if s.interval < 0 {
		return s, usagef("--interval must not be negative, not %v", s.interval)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return s, usagef("--check-cert and --check-key go together: set both or neither")
	}
	if c.path == "" || !strings.HasPrefix(c.path, "/") {
		return s, usagef("--path %q must start with /", c.path)
	}
	useTLS := c.tls || c.kind == "https" || c.kind == "tls"
	tc, err := loadTLS(c.tlsCA, c.tlsCert, c.tlsKey, "--check-cacert", "--check-cert")
	if err != nil {
		return s, err
	}
	serverName := c.tlsServerName
	if serverName == "" && t.Scheme == resolver.SchemeDNS {
		if host, _, err := net.SplitHostPort(t.Endpoint); err == nil && net.ParseIP(host) == nil {
			serverName = host
		}
	}
	tc.ServerName = serverName
	if useTLS {
		s.handshake = &probe.TLSHandshake{Config: tc, ServerName: serverName}
	}
	switch c.kind {
	case "tcp":
		s.checker = probe.TCP{}
	case "http":
		s.checker = probe.HTTP{Path: c.path, Host: serverName}
	case "https":
		s.checker = probe.HTTP{Path: c.path, Scheme: "https", Host: serverName, TLS: tc}
	case "grpc":
		g := probe.GRPCHealth{Service: c.grpcService}
		if c.tls {
			g.TLS = tc
		}
		s.checker = g
	case "tls":
		s.checker = s.handshake
	}
	return s, nil
}

// loadTLS builds a client TLS configuration from PEM files, naming the
// flag at fault in its errors (usage errors).
func loadTLS(caFile, certFile, keyFile, caFlag, certFlag string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, usagef("%s: %v", caFlag, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("%s %s: no PEM certificate in the file", caFlag, caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, usagef("%s %s: %v", certFlag, certFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// runOne runs one check of addr within the timeout. For the tls check it
// also returns the handshake's result, for the TLS column.
func (s checkSpec) runOne(ctx context.Context, addr string) (time.Duration, *probe.HandshakeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.kind == "tls" {
		res, err := s.handshake.Handshake(ctx, addr)
		if err != nil {
			return 0, nil, err
		}
		return res.RTT, &res, nil
	}
	rtt, err := s.checker.Check(ctx, addr)
	return rtt, nil, err
}

// describe is the one-line summary of the check, for the table's
// footer: "http GET /, 5 checks, timeout 1s".
func (s checkSpec) describe(count int) string {
	what := s.kind
	if c, ok := s.checker.(probe.HTTP); ok {
		what = fmt.Sprintf("%s GET %s", s.kind, c.Path)
	}
	return fmt.Sprintf("%s, %s each, timeout %v", what, cliutil.Plural(count, "check", "checks"), s.timeout)
}
