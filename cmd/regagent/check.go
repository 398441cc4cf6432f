package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/smartroute/smartroute/probe"
)

// checker builds the local health check from the config. It reads the TLS
// files once to fail early on a bad one; the client certificate is then
// read again at every handshake, so that a rotated certificate is picked up
// without a restart.
func (ck checkConfig) checker() (probe.Checker, error) {
	var tc *tls.Config
	if ck.useTLS {
		var err error
		if tc, err = clientTLS(ck.caFile, ck.certFile, ck.keyFile, "--check-cacert", "--check-cert"); err != nil {
			return nil, err
		}
		tc.ServerName = ck.serverName
	}
	switch ck.kind {
	case "http", "https":
		return probe.HTTP{Scheme: ck.kind, Path: ck.path, TLS: tc}, nil
	case "grpc":
		return probe.GRPCHealth{Service: ck.grpcService, TLS: tc}, nil
	case "tls":
		return probe.TLSHandshake{Config: tc, ServerName: ck.serverName}, nil
	case "tcp":
		return probe.TCP{}, nil
	}
	return nil, fmt.Errorf("--check %q is not one of the check types", ck.kind)
}

// clientTLS returns a client TLS config trusting the CAs in caFile (the
// system roots when empty) and presenting the certificate in certFile and
// keyFile (none when empty). The names of the flags are for the errors.
func clientTLS(caFile, certFile, keyFile, caFlag, certFlag string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caFlag, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in the file", caFlag, caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("%s %s: %w", certFlag, certFile, err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", certFlag, certFile, err)
			}
			return &c, nil
		}
	}
	return tc, nil
}
