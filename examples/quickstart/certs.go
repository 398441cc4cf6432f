package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/mtls"
)

// The mTLS identities of the demo, as stored under /certs/<name>/. The
// backends present "api" (a server certificate for the DNS name api: the
// client verifies the service's name, not an IP address); the client
// presents "web" (a client certificate).
const (
	serverIdentity = "api"
	clientIdentity = "web"
	serviceName    = "api"
)

// pki is the demo's certificate authority and the key-encryption key that
// seals private keys in etcd. In production the CA lives elsewhere and the
// KEK comes from a file or a secret manager (mtls.LoadKEKFile, LoadKEKEnv).
type pki struct {
	ca      *certgen.CA
	keyring *mtls.Keyring
	kekFile string
	cli     *clientv3.Client

	mu     sync.Mutex
	client *certgen.Leaf // the client leaf published last
}

// issue runs f with a certgen.TB that turns certgen's Fatalf into an error.
func issue[T any](f func(certgen.TB) T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			ce, ok := r.(certError)
			if !ok {
				panic(r)
			}
			err = ce.err
		}
	}()
	return f(certTB{}), nil
}

type certError struct{ err error }

// certTB adapts certgen to a program: Fatalf panics with a certError that
// issue recovers.
type certTB struct{}

func (certTB) Helper() {}
func (certTB) Fatalf(format string, args ...any) {
	panic(certError{fmt.Errorf("certificates: "+format, args...)})
}

// leafValidity is how long the demo's leaf certificates are valid; the CA
// is valid for a year.
const leafValidity = 90 * 24 * time.Hour

// kekID names the demo's key-encryption key in every envelope it seals.
const kekID = "quickstart-kek-1"

// newPKI creates a CA and a key-encryption key (written to a file in dir and
// loaded from it, as a service would load it), and publishes the CA bundle
// to etcd.
func newPKI(ctx context.Context, cli *clientv3.Client, dir string) (*pki, error) {
	ca, err := issue(func(t certgen.TB) *certgen.CA {
		return certgen.NewCA(t, "smartroute quickstart CA", certgen.ValidFor(365*24*time.Hour))
	})
	if err != nil {
		return nil, err
	}
	secret := make([]byte, mtls.KEKSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	kekFile := filepath.Join(dir, "kek.hex")
	if err := os.WriteFile(kekFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	kek, err := mtls.LoadKEKFile(kekID, kekFile)
	if err != nil {
		return nil, err
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		return nil, err
	}
	if _, err := mtls.PublishCA(ctx, cli, ca.PEM); err != nil {
		return nil, fmt.Errorf("publish CA: %w", err)
	}
	return &pki{ca: ca, keyring: kr, kekFile: kekFile, cli: cli}, nil
}

// issued is one published leaf.
type issued struct {
	leaf     *certgen.Leaf
	revision int64 // the etcd revision of the write
}

// publishLeaves issues a new server leaf for "api" and a new client leaf for
// "web" and publishes both (keys sealed). Publishing again is a rotation.
func (p *pki) publishLeaves(ctx context.Context) (server, client issued, err error) {
	server.leaf, err = issue(func(t certgen.TB) *certgen.Leaf {
		return p.ca.Server(t, []string{serviceName}, certgen.ValidFor(leafValidity))
	})
	if err != nil {
		return server, client, err
	}
	client.leaf, err = issue(func(t certgen.TB) *certgen.Leaf {
		return p.ca.Client(t, clientIdentity, certgen.ValidFor(leafValidity))
	})
	if err != nil {
		return server, client, err
	}
	if server.revision, err = mtls.Publish(ctx, p.cli, p.keyring, serverIdentity, server.leaf.CertPEM, server.leaf.KeyPEM); err != nil {
		return server, client, fmt.Errorf("publish %s: %w", serverIdentity, err)
	}
	if client.revision, err = mtls.Publish(ctx, p.cli, p.keyring, clientIdentity, client.leaf.CertPEM, client.leaf.KeyPEM); err != nil {
		return server, client, fmt.Errorf("publish %s: %w", clientIdentity, err)
	}
	p.mu.Lock()
	p.client = client.leaf
	p.mu.Unlock()
	return server, client, nil
}

// writeFiles writes the CA and the current client identity as PEM files in
// dir, for lbprobe (-serve).
func (p *pki) writeFiles(dir string) (caFile, certFile, keyFile string, err error) {
	p.mu.Lock()
	ca, client := p.ca, p.client
	p.mu.Unlock()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, clientIdentity+".pem")
	keyFile = filepath.Join(dir, clientIdentity+"-key.pem")
	err = errors.Join(
		os.WriteFile(caFile, ca.PEM, 0o600),
		os.WriteFile(certFile, client.CertPEM, 0o600),
		os.WriteFile(keyFile, client.KeyPEM, 0o600),
	)
	return caFile, certFile, keyFile, err
}

// servedSerial completes a fresh mTLS handshake with addr and returns the
// serial number of the certificate the server presented: it shows which
// certificate new handshakes use.
func servedSerial(ctx context.Context, addr string, cfg *tls.Config) (string, error) {
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("no peer certificate")
	}
	return shortSerial(certs[0].SerialNumber.Text(16)), nil
}

// shortSerial keeps the first 8 hex digits of a serial number: enough to
// tell certificates apart on screen.
func shortSerial(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
