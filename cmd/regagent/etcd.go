package main

import (
	"crypto/tls"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// clientConfig builds the etcd client configuration. TLS is on when a CA or
// a client certificate is given, or when an endpoint is https://. etcd's
// transport reads the client certificate again at every handshake, so a
// rotated certificate file is picked up without a restart.
func (e etcdConfig) clientConfig() (clientv3.Config, error) {
	cfg := clientv3.Config{
		Endpoints:   e.endpoints,
		DialTimeout: e.dialTimeout,
		// Keepalive pings notice a dead connection (etcd gone without a
		// FIN) within seconds rather than the kernel's minutes.
		DialKeepAliveTime:    e.dialTimeout,
		DialKeepAliveTimeout: e.dialTimeout,
		Username:             e.user,
		Password:             e.password,
		// The agent logs what matters itself; the client's own zap logs
		// would repeat every retry.
		Logger: zap.NewNop(),
	}
	httpsEndpoint := false
	for _, ep := range e.endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			httpsEndpoint = true
		}
	}
	switch {
	case e.caFile != "" || e.certFile != "":
		info := transport.TLSInfo{CertFile: e.certFile, KeyFile: e.keyFile, TrustedCAFile: e.caFile}
		// Fail here, with the flag named, rather than at every dial.
		if _, err := clientTLS(e.caFile, e.certFile, e.keyFile, "--etcd-cacert", "--etcd-cert"); err != nil {
			return cfg, err
		}
		tc, err := info.ClientConfig()
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	case httpsEndpoint:
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}
