package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrExpiresSoon is wrapped by the error of a TLS handshake check whose peer
// certificate expires within TLSHandshake.MinValidity.
var ErrExpiresSoon = errors.New("probe: tls: certificate expires soon")

// TLSHandshake checks an address by completing a TLS handshake with it and
// verifying the peer's certificate. The package never turns verification
// off; only a Config with InsecureSkipVerify set by the caller does.
type TLSHandshake struct {
	// Config is the client configuration (roots, client certificate,
	// versions). nil means the system roots.
	Config *tls.Config
	// ServerName is the name verified against the certificate. Empty means
	// Config.ServerName, or else the host part of the address.
	ServerName string
	// MinValidity, when positive, fails the check (ErrExpiresSoon) when the
	// leaf certificate expires sooner than this from now.
	MinValidity time.Duration
}

// HandshakeResult describes one completed TLS handshake.
type HandshakeResult struct {
	// RTT is the time to connect and complete the handshake.
	RTT time.Duration
	// Version and CipherSuite are what was negotiated (tls.VersionTLS13,
	// tls.TLS_AES_128_GCM_SHA256, ...).
	Version     uint16
	CipherSuite uint16
	// PeerCertificates is the chain the server sent, leaf first.
	PeerCertificates []*x509.Certificate
	// NotAfter is the leaf certificate's expiry.
	NotAfter time.Time
	// Verified reports that the chain was verified against the roots and
	// the server name.
	Verified bool
}

// Check performs a handshake and returns its RTT.
func (t TLSHandshake) Check(ctx context.Context, addr string) (time.Duration, error) {
	r, err := t.Handshake(ctx, addr)
	return r.RTT, err
}

// Handshake connects to addr, completes a verified TLS handshake and closes
// the connection.
func (t TLSHandshake) Handshake(ctx context.Context, addr string) (HandshakeResult, error) {
	var cfg *tls.Config
	if t.Config != nil {
		cfg = t.Config.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return HandshakeResult{}, fmt.Errorf("probe: tls %s: %w", addr, err)
		}
		cfg.ServerName = host
	}
	var d net.Dialer
	start := time.Now()
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return HandshakeResult{RTT: time.Since(start)}, fmt.Errorf("probe: tls %s: %w", addr, err)
	}
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	err = conn.HandshakeContext(ctx)
	res := HandshakeResult{RTT: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("probe: tls handshake %s: %w", addr, err)
	}
	cs := conn.ConnectionState()
	res.Version = cs.Version
	res.CipherSuite = cs.CipherSuite
	res.PeerCertificates = cs.PeerCertificates
	res.Verified = len(cs.VerifiedChains) > 0
	if len(cs.PeerCertificates) > 0 {
		res.NotAfter = cs.PeerCertificates[0].NotAfter
	}
	if t.MinValidity > 0 && !res.NotAfter.IsZero() {
		if left := time.Until(res.NotAfter); left < t.MinValidity {
			return res, fmt.Errorf("%w: %s certificate expires at %s (in %s)", ErrExpiresSoon, addr, res.NotAfter.Format(time.RFC3339), left.Round(time.Second))
		}
	}
	return res, nil
}
