package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/testbackend"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestTCPCheck(t *testing.T) {
	b := testbackend.MustHTTP(t)
	rtt, err := TCP{}.Check(ctx(t), b.Addr())
	if err != nil || rtt <= 0 {
		t.Fatalf("TCP to a listening backend = %v, %v", rtt, err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := (TCP{}).Check(ctx(t), b.Addr()); err == nil {
		t.Fatal("TCP to a stopped backend succeeded")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("refused connect took %v", took)
	}
}

// hostAndPath answers 200 only to GET /healthz with Host svc.example,
// redirects /redir and 404s the rest.
var hostAndPath = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/redir":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	case r.URL.Path == "/healthz" && r.Host == "svc.example":
		_, _ = io.WriteString(w, "ok")
	default:
		http.NotFound(w, r)
	}
})

func TestHTTPCheck(t *testing.T) {
	b := testbackend.MustHTTP(t, testbackend.WithHandler(hostAndPath))
	addr := b.Addr()
	for _, tc := range []struct {
		name string
		h    HTTP
		ok   bool
	}{
		{"path and host", HTTP{Path: "/healthz", Host: "svc.example"}, true},
		{"path without slash", HTTP{Path: "healthz", Host: "svc.example"}, true},
		{"wrong host", HTTP{Path: "/healthz"}, false},
		{"404 outside the range", HTTP{Path: "/nope", Host: "svc.example"}, false},
		{"404 inside a custom range", HTTP{Path: "/nope", StatusMin: 404, StatusMax: 404}, true},
		{"redirect not followed, 302 in 200..399", HTTP{Path: "/redir"}, true},
		{"redirect outside 200..299", HTTP{Path: "/redir", StatusMax: 299}, false},
		{"custom client", HTTP{Path: "/healthz", Host: "svc.example", Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rtt, err := tc.h.Check(ctx(t), addr)
			if tc.ok && (err != nil || rtt <= 0) {
				t.Fatalf("Check = %v, %v; want success", rtt, err)
			}
			if !tc.ok && !errors.Is(err, ErrUnexpectedStatus) {
				t.Fatalf("Check = %v; want ErrUnexpectedStatus", err)
			}
		})
	}
	if _, err := (HTTP{Scheme: "ftp"}).Check(ctx(t), addr); err == nil {
		t.Fatal("scheme ftp accepted")
	}

	b.SetStatus(http.StatusServiceUnavailable)
	if _, err := (HTTP{}).Check(ctx(t), addr); !errors.Is(err, ErrUnexpectedStatus) {
		t.Fatalf("503 = %v, want ErrUnexpectedStatus", err)
	}
	if _, err := (HTTP{StatusMin: 500, StatusMax: 503}).Check(ctx(t), addr); err != nil {
		t.Fatalf("503 within 500..503 = %v", err)
	}
	b.SetStatus(0)

	b.SetLatency(300 * time.Millisecond)
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (HTTP{}).Check(c, addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow answer past the deadline = %v", err)
	}
}

func TestHTTPSCheckVerifies(t *testing.T) {
	ca := certgen.NewCA(t, "ca")
	leaf := ca.Server(t, []string{"svc.example"})
	b := testbackend.MustHTTP(t, testbackend.WithHandler(hostAndPath),
		testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}}))
	roots := &tls.Config{RootCAs: certgen.Pool(ca)}
	good := HTTP{Scheme: "https", Path: "/healthz", Host: "svc.example", TLS: roots}
	if _, err := good.Check(ctx(t), b.Addr()); err != nil {
		t.Fatalf("https with the right CA and name: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	wrongCA := good
	wrongCA.TLS = &tls.Config{RootCAs: certgen.Pool(certgen.NewCA(t, "other"))}
	if _, err := wrongCA.Check(ctx(t), b.Addr()); !errors.As(err, &unknown) {
		t.Fatalf("https with the wrong CA = %v, want an unknown authority", err)
	}
	systemRoots := good
	systemRoots.TLS = nil
	if _, err := systemRoots.Check(ctx(t), b.Addr()); !errors.As(err, &unknown) {
		t.Fatalf("https with the system roots = %v, want an unknown authority", err)
	}
	var host x509.HostnameError
	noHost := good
	noHost.Host = "" // the name checked is then 127.0.0.1, not in the certificate
	if _, err := noHost.Check(ctx(t), b.Addr()); !errors.As(err, &host) {
		t.Fatalf("https verified against the IP = %v, want a hostname error", err)
	}
}

func TestGRPCHealthCheck(t *testing.T) {
	b := testbackend.MustGRPC(t)
	if rtt, err := (GRPCHealth{}).Check(ctx(t), b.Addr()); err != nil || rtt <= 0 {
		t.Fatalf("SERVING = %v, %v", rtt, err)
	}
	b.SetServing("svc", false)
	if _, err := (GRPCHealth{Service: "svc"}).Check(ctx(t), b.Addr()); !errors.Is(err, ErrNotServing) {
		t.Fatalf("NOT_SERVING = %v, want ErrNotServing", err)
	}
	b.SetServing("svc", true)
	if _, err := (GRPCHealth{Service: "svc"}).Check(ctx(t), b.Addr()); err != nil {
		t.Fatalf("svc SERVING again = %v", err)
	}
	_, err := GRPCHealth{Service: "unknown"}.Check(ctx(t), b.Addr())
	if status.Code(err) != codes.NotFound || errors.Is(err, ErrNotServing) {
		t.Fatalf("unknown service = %v, want NotFound", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := (GRPCHealth{}).Check(ctx(t), b.Addr()); status.Code(err) != codes.Unavailable {
		t.Fatalf("stopped server = %v, want Unavailable", err)
	}
}

func TestGRPCHealthCheckTLS(t *testing.T) {
	ca := certgen.NewCA(t, "ca")
	leaf := ca.Server(t, []string{"127.0.0.1"})
	b := testbackend.MustGRPC(t, testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}}))
	if _, err := (GRPCHealth{TLS: &tls.Config{RootCAs: certgen.Pool(ca)}}).Check(ctx(t), b.Addr()); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	if _, err := (GRPCHealth{TLS: &tls.Config{RootCAs: certgen.Pool(certgen.NewCA(t, "other"))}}).Check(ctx(t), b.Addr()); err == nil {
		t.Fatal("gRPC over TLS with the wrong CA succeeded")
	}
}

func TestTLSHandshake(t *testing.T) {
	ca := certgen.NewCA(t, "ca")
	leaf := ca.Server(t, []string{"svc.example", "127.0.0.1"}, certgen.ValidFor(48*time.Hour))
	b := testbackend.MustHTTP(t, testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(t)}}))
	roots := &tls.Config{RootCAs: certgen.Pool(ca)}

	res, err := TLSHandshake{Config: roots, ServerName: "svc.example"}.Handshake(ctx(t), b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.RTT <= 0 || res.Version != tls.VersionTLS13 || res.CipherSuite == 0 {
		t.Fatalf("result %+v", res)
	}
	if !res.NotAfter.Equal(leaf.Cert.NotAfter) || len(res.PeerCertificates) == 0 || !res.PeerCertificates[0].Equal(leaf.Cert) {
		t.Fatalf("NotAfter %v (want %v), peer certificates %d", res.NotAfter, leaf.Cert.NotAfter, len(res.PeerCertificates))
	}
	// Without ServerName the address's IP is verified.
	if rtt, err := (TLSHandshake{Config: roots}).Check(ctx(t), b.Addr()); err != nil || rtt <= 0 {
		t.Fatalf("Check by IP = %v, %v", rtt, err)
	}

	var unknown x509.UnknownAuthorityError
	if _, err := (TLSHandshake{Config: &tls.Config{RootCAs: certgen.Pool(certgen.NewCA(t, "other"))}}).Handshake(ctx(t), b.Addr()); !errors.As(err, &unknown) {
		t.Fatalf("wrong CA = %v, want an unknown authority", err)
	}
	if _, err := (TLSHandshake{}).Handshake(ctx(t), b.Addr()); !errors.As(err, &unknown) {
		t.Fatalf("system roots = %v, want an unknown authority", err)
	}
	var host x509.HostnameError
	if _, err := (TLSHandshake{Config: roots, ServerName: "other.example"}).Handshake(ctx(t), b.Addr()); !errors.As(err, &host) {
		t.Fatalf("wrong name = %v, want a hostname error", err)
	}
	res, err = TLSHandshake{Config: roots, MinValidity: 72 * time.Hour}.Handshake(ctx(t), b.Addr())
	if !errors.Is(err, ErrExpiresSoon) || !res.NotAfter.Equal(leaf.Cert.NotAfter) {
		t.Fatalf("48h certificate with MinValidity 72h = %v (NotAfter %v), want ErrExpiresSoon", err, res.NotAfter)
	}
	if _, err := (TLSHandshake{Config: roots, MinValidity: 24 * time.Hour}).Handshake(ctx(t), b.Addr()); err != nil {
		t.Fatalf("48h certificate with MinValidity 24h = %v", err)
	}

	expired := ca.Server(t, []string{"127.0.0.1"}, certgen.Expired())
	eb := testbackend.MustHTTP(t, testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{expired.TLSCertificate(t)}}))
	var invalid x509.CertificateInvalidError
	if _, err := (TLSHandshake{Config: roots}).Handshake(ctx(t), eb.Addr()); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Fatalf("expired certificate = %v, want x509 Expired", err)
	}
}
