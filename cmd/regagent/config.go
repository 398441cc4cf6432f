package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/registry"
)

// Defaults of the flags that are not the registry's or the probe's own.
const (
	// defaultEndpoints is etcd's own default client URL, as etcdctl uses.
	defaultEndpoints = cliutil.DefaultEtcdEndpoints
	// defaultDrainPeriod leaves clients time to see the draining state
	// (well under a second through an etcd watch) and to finish the
	// requests already sent, within Kubernetes' default 30 s grace period.
	defaultDrainPeriod = 10 * time.Second
	// defaultListen serves /metrics and /healthz on every interface so that
	// Prometheus and kubelet can reach them; "off" or "" turns the server
	// off.
	defaultListen = ":9469"
	// defaultCheck needs nothing from the service but a listening port.
	defaultCheck = "tcp"
	// maxWeight bounds --weight: weights are relative, and a bounded range
	// keeps weighted round-robin schedules short.
	maxWeight = 10000
	// maxRiseFall bounds --rise and --fall; beyond it a flapping check
	// would take minutes to decide anything.
	maxRiseFall = 100
	// envPrefix prefixes the environment variable of every flag:
	// --etcd-endpoints is REGAGENT_ETCD_ENDPOINTS. It is the command's
	// own, so that a variable meant for lbprobe never changes regagent.
	envPrefix = "REGAGENT"
)

// noEnvFlags are read from the command line only: --version (so that no
// environment variable or config line can turn a sidecar into a program
// that prints its version and exits 0) and --config itself in the file.
var noEnvFlags = []string{"version"}

// Check types accepted by --check.
var checkTypes = []string{"http", "https", "tcp", "grpc", "tls"}

// config is the agent's validated configuration.
type config struct {
	etcd     etcdConfig
	instance registry.Instance
	ttl      time.Duration
	check    checkConfig

	drainPeriod time.Duration
	listen      string
	logFormat   string
	logLevel    slog.Level
}

type etcdConfig struct {
	client      clientv3.Config // endpoints as URLs, TLS, credentials
	endpoints   []string
	dialTimeout time.Duration
	prefix      string
}

type checkConfig struct {
	kind     string // one of checkTypes
	target   string // as given, or derived from --addr
	addr     string // host:port probed
	path     string // http(s): request path and query
	interval time.Duration
	timeout  time.Duration
	rise     int
	fall     int

	useTLS      bool // https, tls, or grpc with --check-tls
	caFile      string
	certFile    string
	keyFile     string
	serverName  string
	grpcService string
}

// rawFlags holds the flag values as parsed, before validation.
type rawFlags struct {
	etcd                                    cliutil.EtcdFlags
	prefix                                  string
	service, id, addr, zone, instVersion    string
	weight                                  intValue
	labels                                  labelsValue
	ttl                                     durationValue
	check, checkTarget                      string
	checkInterval, checkTimeout             durationValue
	rise, fall                              intValue
	checkCA, checkCert, checkKey            string
	checkServerName, checkGRPCSvc           string
	checkTLS                                bool
	drainPeriod                             durationValue
	listen, configFile, logFormat, logLevel string
	version                                 bool
}

// newFlagSet defines every flag on a fresh FlagSet writing its usage to
// out.
func newFlagSet(r *rawFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("regagent", flag.ContinueOnError)
	fs.SetOutput(out)

	r.weight = registry.DefaultWeight
	r.labels = labelsValue{}
	r.ttl = durationValue(registry.DefaultTTL)
	r.checkInterval = durationValue(probe.DefaultInterval)
	r.checkTimeout = durationValue(probe.DefaultTimeout)
	r.rise = probe.DefaultRise
	r.fall = probe.DefaultFall
	r.drainPeriod = durationValue(defaultDrainPeriod)

	// etcd
	r.etcd.Register(fs, envPrefix)
	fs.StringVar(&r.prefix, "etcd-prefix", registry.DefaultPrefix, "etcd key prefix of the service registry")

	// instance
	fs.StringVar(&r.service, "service", "", "service name (required)")
	fs.StringVar(&r.id, "id", "", "instance ID, unique within the service (default: --addr)")
	fs.StringVar(&r.addr, "addr", "", "host:port clients connect to (required)")
	fs.StringVar(&r.zone, "zone", "", "zone (failure domain) of the instance, e.g. eu-west-1a")
	fs.Var(&r.weight, "weight", fmt.Sprintf("relative weight of the instance, 1 to %d", maxWeight))
	fs.StringVar(&r.instVersion, "instance-version", "", "version of the deployed service (informational)")
	fs.Var(r.labels, "label", "label key=value; repeatable, or comma-separated pairs")
	fs.Var(&r.ttl, "ttl", fmt.Sprintf("lease TTL in whole seconds (etcd's unit), at least %v: a crashed agent's instance disappears within it", registry.MinTTL))

	// local health check
	fs.StringVar(&r.check, "check", defaultCheck, "local health check: "+strings.Join(checkTypes, "|"))
	fs.StringVar(&r.checkTarget, "check-target", "", "what to check: a URL for http/https, host:port otherwise (default: from --addr)")
	fs.Var(&r.checkInterval, "check-interval", "time between checks")
	fs.Var(&r.checkTimeout, "check-timeout", "timeout of one check")
	fs.Var(&r.rise, "rise", "consecutive successful checks before the instance is registered")
	fs.Var(&r.fall, "fall", "consecutive failed checks before the instance is deregistered")
	fs.StringVar(&r.checkCA, "check-cacert", "", "PEM CAs that verify the checked service's certificate (default: system roots)")
	fs.StringVar(&r.checkCert, "check-cert", "", "PEM client certificate presented by the check (with --check-key)")
	fs.StringVar(&r.checkKey, "check-key", "", "PEM private key of --check-cert")
	fs.StringVar(&r.checkServerName, "check-server-name", "", "name verified against the checked service's certificate (default: the target host)")
	fs.StringVar(&r.checkGRPCSvc, "check-grpc-service", "", "service name asked about by the grpc check (default: the whole server)")
	fs.BoolVar(&r.checkTLS, "check-tls", false, "use TLS for the grpc check")

	// lifecycle and operations
	fs.Var(&r.drainPeriod, "drain-period", "on SIGTERM/SIGINT, how long the instance stays registered as draining before it is deregistered")
	fs.StringVar(&r.listen, "listen", defaultListen, `address of the /metrics and /healthz server ("off" or "" turns it off)`)
	fs.StringVar(&r.configFile, "config", "", "config file: one flag name and value per line, # comments")
	fs.StringVar(&r.logFormat, "log-format", "text", "log format: text|json")
	fs.StringVar(&r.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	fs.BoolVar(&r.version, "version", false, "print the version and exit (command line only)")
	return fs
}

// validate checks the raw flags and builds the config. It reports every
// problem, one per line, each naming the flag at fault.
func (r *rawFlags) validate() (*config, error) {
	c := &config{
		drainPeriod: time.Duration(r.drainPeriod),
		listen:      r.listen,
		logFormat:   r.logFormat,
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	// etcd
	c.etcd = etcdConfig{dialTimeout: time.Duration(r.etcd.DialTimeout), prefix: r.prefix}
	if cc, err := r.etcd.Config(); err != nil {
		errs = append(errs, err)
	} else {
		c.etcd.client, c.etcd.endpoints = cc, cc.Endpoints
	}
	if !strings.HasPrefix(c.etcd.prefix, "/") {
		bad("--etcd-prefix %q must start with /", c.etcd.prefix)
	}

	// instance
	c.instance = registry.Instance{
		Service: r.service,
		ID:      r.id,
		Addr:    r.addr,
		Zone:    r.zone,
		Version: r.instVersion,
		Weight:  uint32(max(r.weight, 0)),
	}
	if len(r.labels) > 0 {
		c.instance.Labels = map[string]string(r.labels)
	}
	instOK := true
	if r.service == "" {
		bad("--service is required")
		instOK = false
	}
	if r.addr == "" {
		bad("--addr is required")
		instOK = false
	} else if err := checkHostPort(r.addr); err != nil {
		bad("--addr: %v", err)
		instOK = false
	}
	if r.weight < 1 || r.weight > maxWeight {
		bad("--weight %d is out of range 1..%d", r.weight, maxWeight)
	}
	if instOK {
		if err := c.instance.Validate(); err != nil {
			bad("%v", err)
		}
	}
	c.ttl = time.Duration(r.ttl)
	switch {
	case c.ttl < registry.MinTTL:
		bad("--ttl %v is under the %v minimum", c.ttl, registry.MinTTL)
	case c.ttl%time.Second != 0:
		bad("--ttl %v is not a whole number of seconds (etcd leases count in seconds): use %v or %v",
			c.ttl, c.ttl.Truncate(time.Second), c.ttl.Truncate(time.Second)+time.Second)
	}

	// check
	ck := checkConfig{
		kind:        r.check,
		interval:    time.Duration(r.checkInterval),
		timeout:     time.Duration(r.checkTimeout),
		rise:        int(r.rise),
		fall:        int(r.fall),
		caFile:      r.checkCA,
		certFile:    r.checkCert,
		keyFile:     r.checkKey,
		serverName:  r.checkServerName,
		grpcService: r.checkGRPCSvc,
	}
	if !slices.Contains(checkTypes, ck.kind) {
		bad("--check %q is not one of %s", ck.kind, strings.Join(checkTypes, ", "))
	} else if err := ck.setTarget(r.checkTarget, r.addr, r.checkTLS); err != nil {
		bad("%v", err)
	}
	if ck.interval <= 0 {
		bad("--check-interval %v must be positive", ck.interval)
	}
	if ck.timeout <= 0 {
		bad("--check-timeout %v must be positive", ck.timeout)
	} else if ck.interval > 0 && ck.timeout > ck.interval {
		bad("--check-timeout %v is longer than --check-interval %v", ck.timeout, ck.interval)
	}
	if ck.rise < 1 || ck.rise > maxRiseFall {
		bad("--rise %d is out of range 1..%d", ck.rise, maxRiseFall)
	}
	if ck.fall < 1 || ck.fall > maxRiseFall {
		bad("--fall %d is out of range 1..%d", ck.fall, maxRiseFall)
	}
	if (r.checkCert == "") != (r.checkKey == "") {
		bad("--check-cert and --check-key go together: set both or neither")
	}
	if !ck.useTLS && (r.checkCA != "" || r.checkCert != "" || r.checkServerName != "") && slices.Contains(checkTypes, ck.kind) {
		bad("--check-cacert, --check-cert and --check-server-name need a TLS check (https, tls, or grpc with --check-tls); --check is %s", ck.kind)
	}
	if r.checkGRPCSvc != "" && ck.kind != "grpc" {
		bad("--check-grpc-service needs --check grpc; --check is %s", ck.kind)
	}
	c.check = ck

	// lifecycle and operations
	if c.drainPeriod < 0 {
		bad("--drain-period %v is negative", c.drainPeriod)
	}
	if c.listen == "off" {
		c.listen = "" // an empty value cannot be given in the environment or the file
	}
	if c.listen != "" {
		if err := checkListen(c.listen); err != nil {
			bad("--listen: %v", err)
		}
	}
	switch c.logFormat {
	case "text", "json":
	default:
		bad("--log-format %q is not text or json", c.logFormat)
	}
	if err := c.logLevel.UnmarshalText([]byte(r.logLevel)); err != nil {
		bad("--log-level %q is not debug, info, warn or error", r.logLevel)
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// setTarget derives what the check probes from --check-target, or from
// --addr when the target is empty.
func (ck *checkConfig) setTarget(target, addr string, grpcTLS bool) error {
	switch ck.kind {
	case "https", "tls":
		ck.useTLS = true
		if grpcTLS {
			return fmt.Errorf("--check-tls is for --check grpc; --check %s always uses TLS", ck.kind)
		}
	case "grpc":
		ck.useTLS = grpcTLS
	default:
		if grpcTLS {
			return fmt.Errorf("--check-tls is for --check grpc; --check is %s", ck.kind)
		}
	}
	if target == "" {
		if checkHostPort(addr) != nil {
			return nil // reported as a missing or bad --addr
		}
		target = addr
	}
	ck.target = target
	switch ck.kind {
	case "http", "https":
		if !strings.Contains(target, "://") {
			if err := checkHostPort(target); err != nil {
				return fmt.Errorf("--check-target: %v", err)
			}
			ck.addr, ck.path = target, "/"
			ck.target = ck.kind + "://" + target + "/"
			return nil
		}
		u, err := url.Parse(target)
		if err != nil {
			return fmt.Errorf("--check-target %q is not a URL: %v", target, err)
		}
		if u.Scheme != ck.kind {
			return fmt.Errorf("--check-target %q: scheme %q does not match --check %s", target, u.Scheme, ck.kind)
		}
		if u.User != nil || u.Fragment != "" {
			return fmt.Errorf("--check-target %q: user info and fragments are not supported", target)
		}
		host := u.Host
		if u.Port() == "" {
			port := "80"
			if ck.kind == "https" {
				port = "443"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		if err := checkHostPort(host); err != nil {
			return fmt.Errorf("--check-target %q: %v", target, err)
		}
		ck.addr = host
		ck.path = u.RequestURI()
		return nil
	default:
		if strings.Contains(target, "://") {
			return fmt.Errorf("--check-target %q: --check %s takes host:port, not a URL", target, ck.kind)
		}
		if err := checkHostPort(target); err != nil {
			return fmt.Errorf("--check-target: %v", err)
		}
		ck.addr = target
		return nil
	}
}

// checkHostPort reports whether s is host:port with a non-empty host and a
// port from 1 to 65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	return nil
}

// checkListen accepts host:port with an empty host (all interfaces) and
// port 0 (any free port).
func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	return nil
}
