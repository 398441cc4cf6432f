package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Defaults of the etcd flags, as regagent's.
const (
	// defaultEtcdEndpoints is etcd's own default client URL, as etcdctl
	// uses.
	defaultEtcdEndpoints = "127.0.0.1:2379"
	// defaultEtcdDialTimeout bounds the wait for etcd's first answer: a
	// diagnosis tool should say "unreachable" quickly rather than hang.
	defaultEtcdDialTimeout = 5 * time.Second
)

// etcdFlags are the flags that reach etcd, named as regagent's.
type etcdFlags struct {
	endpoints                 listValue
	caFile, certFile, keyFile string
	user, password            string
	dialTimeout               durationValue
}

func (e *etcdFlags) register(fs *flag.FlagSet) {
	e.endpoints = listValue{defaultEtcdEndpoints}
	e.dialTimeout = durationValue(defaultEtcdDialTimeout)
	fs.Var(&e.endpoints, "etcd-endpoints", "comma-separated etcd endpoints (host:port, http:// or https:// URLs)")
	fs.StringVar(&e.caFile, "etcd-cacert", "", "PEM file of the CAs that sign etcd's server certificate (turns on TLS)")
	fs.StringVar(&e.certFile, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	fs.StringVar(&e.keyFile, "etcd-key", "", "PEM private key of --etcd-cert")
	fs.StringVar(&e.user, "etcd-user", "", "etcd user name, or user:password")
	fs.StringVar(&e.password, "etcd-password", "", "etcd password (prefer the environment variable)")
	fs.Var(&e.dialTimeout, "etcd-dial-timeout", "how long to wait for etcd's first answer before giving up")
}

// config validates the flags and returns the etcd client configuration.
// Its errors are usage errors that name the flag.
func (e *etcdFlags) config() (clientv3.Config, error) {
	user, password := e.user, e.password
	if password == "" {
		if u, p, ok := strings.Cut(user, ":"); ok {
			user, password = u, p
		}
	}
	if password != "" && user == "" {
		return clientv3.Config{}, usagef("--etcd-password is set but --etcd-user is not")
	}
	if (e.certFile == "") != (e.keyFile == "") {
		return clientv3.Config{}, usagef("--etcd-cert and --etcd-key go together: set both or neither")
	}
	if e.dialTimeout <= 0 {
		return clientv3.Config{}, usagef("--etcd-dial-timeout must be positive, not %v", time.Duration(e.dialTimeout))
	}
	useTLS := e.caFile != "" || e.certFile != ""
	var eps []string
	for _, ep := range e.endpoints {
		norm, err := normalizeEndpoint(ep, useTLS)
		if err != nil {
			return clientv3.Config{}, usagef("--etcd-endpoints: %v", err)
		}
		if strings.HasPrefix(norm, "https://") {
			useTLS = true
		}
		eps = append(eps, norm)
	}
	cfg := clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          time.Duration(e.dialTimeout),
		DialKeepAliveTime:    time.Duration(e.dialTimeout),
		DialKeepAliveTimeout: time.Duration(e.dialTimeout),
		Username:             user,
		Password:             password,
		// Errors are reported once, by lbprobe; the client's own logs
		// would repeat every retry.
		Logger: zap.NewNop(),
	}
	switch {
	case e.caFile != "" || e.certFile != "":
		info := transport.TLSInfo{CertFile: e.certFile, KeyFile: e.keyFile, TrustedCAFile: e.caFile}
		// Load the files now, to name the flag at fault.
		if _, err := loadTLS(e.caFile, e.certFile, e.keyFile, "--etcd-cacert", "--etcd-cert"); err != nil {
			return clientv3.Config{}, err
		}
		tc, err := info.ClientConfig()
		if err != nil {
			return clientv3.Config{}, usagef("etcd TLS: %v", err)
		}
		cfg.TLS = tc
	case useTLS:
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}

// newEtcdClient validates the flags and creates the client. clientv3.New
// does not wait for a connection; the first request does.
func (e *etcdFlags) newClient() (*clientv3.Client, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return cli, nil
}

// normalizeEndpoint checks one --etcd-endpoints entry: host:port or an
// http(s):// URL. A bare host:port gets the scheme the TLS flags imply.
func normalizeEndpoint(ep string, useTLS bool) (string, error) {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", fmt.Errorf("%q: %v", ep, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return "", fmt.Errorf("%q: scheme must be http or https", ep)
		}
		if u.Host == "" {
			return "", fmt.Errorf("%q: no host", ep)
		}
		return ep, nil
	}
	if !strings.Contains(ep, ":") {
		return "", fmt.Errorf("%q is not host:port or a URL", ep)
	}
	if useTLS {
		return "https://" + ep, nil
	}
	return "http://" + ep, nil
}
