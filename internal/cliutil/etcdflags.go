package cliutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/smartroute/smartroute/internal/cliflag"
)

// Defaults of the etcd flags, the same for both commands.
const (
	// DefaultEtcdEndpoints is etcd's own default client URL, as etcdctl
	// uses.
	DefaultEtcdEndpoints = "127.0.0.1:2379"
	// DefaultEtcdDialTimeout bounds the start-up check of etcd and one
	// attempt to reach it: a person or a kubelet should hear within
	// seconds that etcd cannot be used, and why.
	DefaultEtcdDialTimeout = 5 * time.Second
)

// EtcdFlags are the flags that reach etcd, named alike in both commands.
type EtcdFlags struct {
	Endpoints    cliflag.List
	CAFile       string
	CertFile     string
	KeyFile      string
	User         string
	Password     string
	PasswordFile string
	DialTimeout  cliflag.Duration

	envPrefix string
}

// Register defines the flags on fs with their defaults. envPrefix is the
// command's environment prefix, for the help.
func (e *EtcdFlags) Register(fs *flag.FlagSet, envPrefix string) {
	e.envPrefix = envPrefix
	e.Endpoints = cliflag.List{DefaultEtcdEndpoints}
	e.DialTimeout = cliflag.Duration(DefaultEtcdDialTimeout)
	fs.Var(&e.Endpoints, "etcd-endpoints", "comma-separated etcd endpoints: host:port, http:// or https:// URLs, without credentials")
	fs.StringVar(&e.CAFile, "etcd-cacert", "", "PEM file of the CAs that sign etcd's server certificate (turns on TLS)")
	fs.StringVar(&e.CertFile, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	fs.StringVar(&e.KeyFile, "etcd-key", "", "PEM private key of --etcd-cert")
	fs.StringVar(&e.User, "etcd-user", "", "etcd user name (user:password is accepted, but shows in ps)")
	fs.StringVar(&e.Password, "etcd-password", "", "etcd password; prefer --etcd-password-file or $"+EnvName(envPrefix, "etcd-password")+": flags show in ps")
	fs.StringVar(&e.PasswordFile, "etcd-password-file", "", "file holding the etcd password (one trailing newline is ignored)")
	fs.Var(&e.DialTimeout, "etcd-dial-timeout", "how long the start-up check and one attempt to reach etcd may take")
}

// Warnings returns what to tell the user about how the flags were given:
// a password on the command line, which ps shows. cmdline holds the flags
// given on the command line.
func (e *EtcdFlags) Warnings(cmdline map[string]bool) []string {
	env := EnvName(e.envPrefix, "etcd-password")
	var out []string
	if cmdline["etcd-password"] {
		out = append(out, "--etcd-password on the command line shows in ps: use --etcd-password-file or $"+env)
	}
	if cmdline["etcd-user"] && strings.Contains(e.User, ":") {
		out = append(out, "--etcd-user user:password on the command line shows the password in ps: use --etcd-password-file or $"+env)
	}
	return out
}

// Config validates the flags and returns the etcd client configuration.
// Its error lists every problem, one per line, each naming its flag.
func (e *EtcdFlags) Config() (clientv3.Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	user, password := e.User, e.Password
	if e.PasswordFile != "" {
		if password != "" {
			bad("--etcd-password and --etcd-password-file: give one")
		}
		b, err := os.ReadFile(e.PasswordFile)
		switch {
		case err != nil:
			bad("--etcd-password-file: %v", err)
		default:
			password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			if password == "" {
				bad("--etcd-password-file %s is empty", e.PasswordFile)
			}
		}
	}
	if password == "" {
		if u, p, ok := strings.Cut(user, ":"); ok {
			user, password = u, p
		}
	}
	switch {
	case password != "" && user == "":
		bad("an etcd password is set but --etcd-user is not")
	case user != "" && password == "" && e.PasswordFile == "":
		bad("--etcd-user %s has no password: give --etcd-password-file FILE or $%s (a user that authenticates by its client certificate needs no --etcd-user)",
			user, EnvName(e.envPrefix, "etcd-password"))
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		bad("--etcd-cert and --etcd-key go together: set both or neither")
	}
	if time.Duration(e.DialTimeout) <= 0 {
		bad("--etcd-dial-timeout %v must be positive", time.Duration(e.DialTimeout))
	}

	tlsFlags := e.CAFile != "" || e.CertFile != ""
	var eps []string
	schemes := map[string]bool{}
	for _, ep := range e.Endpoints {
		norm, scheme, err := normalizeEndpoint(ep, tlsFlags)
		if err != nil {
			bad("--etcd-endpoints: %v", err)
			continue
		}
		schemes[scheme] = true
		eps = append(eps, norm)
	}
	if len(e.Endpoints) == 0 {
		bad("--etcd-endpoints is empty")
	}
	if schemes["http"] && schemes["https"] {
		bad("--etcd-endpoints mixes http:// and https://: etcd's client uses one scheme for all")
	}
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: time.Duration(e.DialTimeout),
		// Keepalive pings notice a dead connection (etcd gone without a
		// FIN) within seconds rather than the kernel's minutes.
		DialKeepAliveTime:    time.Duration(e.DialTimeout),
		DialKeepAliveTimeout: time.Duration(e.DialTimeout),
		Username:             user,
		Password:             password,
		// The commands report what matters themselves, once; the
		// client's own logs would repeat every retry.
		Logger: zap.NewNop(),
	}
	switch {
	case tlsFlags:
		if err := checkTLSFiles(e.CAFile, e.CertFile, e.KeyFile); err != nil {
			bad("%v", err)
			break
		}
		// etcd's transport reads the client certificate again at every
		// handshake, so a rotated certificate file is picked up without
		// a restart.
		info := transport.TLSInfo{CertFile: e.CertFile, KeyFile: e.KeyFile, TrustedCAFile: e.CAFile}
		tc, err := info.ClientConfig()
		if err != nil {
			bad("etcd TLS: %v", err)
			break
		}
		cfg.TLS = tc
	case schemes["https"]:
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(errs) > 0 {
		return clientv3.Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// normalizeEndpoint checks one --etcd-endpoints entry and returns it as a
// URL: a bare host:port gets https:// when the TLS flags are set, http://
// otherwise. A URL with credentials is refused, its password not repeated.
func normalizeEndpoint(ep string, tlsFlags bool) (norm, scheme string, err error) {
	if !strings.Contains(ep, "://") {
		if strings.Contains(ep, "@") {
			return "", "", fmt.Errorf("%s carries credentials, which logs would show: give --etcd-user and --etcd-password-file instead", quoteEndpoint(ep))
		}
		if err := checkHostPort(ep); err != nil {
			return "", "", fmt.Errorf("%s is not host:port or a URL", quoteEndpoint(ep))
		}
		if tlsFlags {
			return "https://" + ep, "https", nil
		}
		return "http://" + ep, "http", nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", "", fmt.Errorf("%s is not a URL", quoteEndpoint(ep))
	}
	if u.User != nil {
		return "", "", fmt.Errorf("%q carries credentials, which etcd's client ignores and logs would show: give --etcd-user and --etcd-password-file instead",
			u.Redacted())
	}
	switch u.Scheme {
	case "http":
		if tlsFlags {
			return "", "", fmt.Errorf("%q is http:// but --etcd-cacert or --etcd-cert turns on TLS: use https://", ep)
		}
	case "https", "unix", "unixs":
	default:
		return "", "", fmt.Errorf("%q: scheme %q is not http, https, unix or unixs", ep, u.Scheme)
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		if err := checkHostPort(u.Host); err != nil {
			return "", "", fmt.Errorf("%q: %v", ep, err)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return "", "", fmt.Errorf("%q: an etcd endpoint has no path or query", ep)
		}
	}
	return ep, u.Scheme, nil
}

// quoteEndpoint quotes ep for an error, hiding what looks like a password
// (user:password@host without a scheme).
func quoteEndpoint(ep string) string {
	if at := strings.LastIndex(ep, "@"); at >= 0 {
		if u, _, ok := strings.Cut(ep[:at], ":"); ok {
			return strconv.Quote(u + ":***" + ep[at:])
		}
	}
	return strconv.Quote(ep)
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

// checkTLSFiles loads the TLS files once, to name the flag at fault.
func checkTLSFiles(caFile, certFile, keyFile string) error {
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--etcd-cacert: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("--etcd-cacert %s: no PEM certificate in the file", caFile)
		}
	}
	if certFile != "" && keyFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return fmt.Errorf("--etcd-cert %s: %w", certFile, err)
		}
	}
	return nil
}
