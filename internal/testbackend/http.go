package testbackend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/ports"
	"github.com/smartroute/smartroute/loadreport"
)

// HeaderBackend is the response header (and gRPC metadata key, lower-cased)
// that carries the backend's name.
const HeaderBackend = "X-Backend"

// HeaderRequestHost is the response header that echoes the request's Host.
const HeaderRequestHost = "X-Request-Host"

// ErrStopped is returned by Stop on a stopped backend.
var ErrStopped = errors.New("testbackend: stopped")

// HTTP is an HTTP or HTTPS server on loopback. Every request, whatever its
// path, waits for a free worker (WithCapacity), waits the injected latency,
// and is answered with the status (200 unless overridden), the headers
// X-Backend: <name> and X-Request-Host: <the request's Host>, and the body
// "<name>\n" (or by the WithHandler handler). Methods are safe for
// concurrent use.
type HTTP struct {
	name    string
	addr    string
	tls     *tls.Config
	delay   delay
	status  atomic.Int64
	workers workers
	handler http.Handler
	load    *loadreport.Reporter            // nil without WithLoadReport
	outer   func(http.Handler) http.Handler // WithMiddleware
	// noCancel (WithoutCancel): requests wait and work under the
	// incarnation's context instead of their own; Stop cancels it.
	noCancel bool
	stopWork context.CancelFunc // cancels the current incarnation's context

	requests atomic.Int64
	inFlight atomic.Int64

	mu       sync.Mutex
	srv      *http.Server // nil while stopped
	serveErr chan error
	handlers tracker
}

// NewHTTP starts an HTTP backend (HTTPS with WithTLS).
func NewHTTP(opts ...Option) (*HTTP, error) {
	cfg := newConfig(opts)
	ln, err := listen(cfg.addr)
	if err != nil {
		return nil, err
	}
	b := &HTTP{
		name:     cfg.name,
		addr:     ln.Addr().String(),
		tls:      cfg.tls,
		workers:  newWorkers(cfg.capacity),
		handler:  cfg.handler,
		load:     cfg.newReporter(),
		outer:    cfg.middleware,
		noCancel: cfg.noCancel,
	}
	if b.name == "" {
		b.name = b.addr
	}
	b.delay.set(cfg.latency)
	b.delay.setTail(cfg.tailP, cfg.tailK)
	b.status.Store(int64(cfg.status))
	b.mu.Lock()
	b.serveLocked(ln)
	b.mu.Unlock()
	return b, nil
}

// MustHTTP is NewHTTP for tests: it fails t on error and closes the backend
// in t.Cleanup.
func MustHTTP(t testing.TB, opts ...Option) *HTTP {
	t.Helper()
	b, err := NewHTTP(opts...)
	if err != nil {
		t.Fatalf("testbackend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Name returns the backend's name.
func (b *HTTP) Name() string { return b.name }

// Addr returns the host:port the backend listens on; it stays the same
// across Stop and Restart.
func (b *HTTP) Addr() string { return b.addr }

// URL returns "http://addr" or "https://addr".
func (b *HTTP) URL() string {
	if b.tls != nil {
		return "https://" + b.addr
	}
	return "http://" + b.addr
}

// SetLatency changes the delay of every answer from now on.
func (b *HTTP) SetLatency(d time.Duration) { b.delay.set(d) }

// SetHeavyTail delays a fraction p of the answers k times the latency.
// p = 0 turns the tail off.
func (b *HTTP) SetHeavyTail(p, k float64) { b.delay.setTail(p, k) }

// SetStatus makes every answer use code; 0 restores 200.
func (b *HTTP) SetStatus(code int) { b.status.Store(int64(code)) }

// Requests returns how many requests reached the handler (counted on
// arrival, including ones still queued or waiting).
func (b *HTTP) Requests() int64 { return b.requests.Load() }

// InFlight returns how many requests are being handled right now.
func (b *HTTP) InFlight() int64 { return b.inFlight.Load() }

// Running reports whether the backend is serving (not stopped).
func (b *HTTP) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// LoadReporter returns the Reporter of a backend started with
// WithLoadReport (to set utilizations, read InFlight), nil otherwise.
func (b *HTTP) LoadReporter() *loadreport.Reporter { return b.load }

// serve answers one request; life is the incarnation's context.
func (b *HTTP) serve(w http.ResponseWriter, r *http.Request, life context.Context) {
	b.handlers.begin()
	defer b.handlers.end()
	b.requests.Add(1)
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	_, _ = io.Copy(io.Discard, r.Body)
	ctx := r.Context()
	if b.noCancel {
		ctx = life
	}
	if err := b.workers.acquire(ctx); err != nil {
		return
	}
	defer b.workers.release()
	if err := b.delay.wait(ctx); err != nil {
		return
	}
	code := int(b.status.Load())
	w.Header().Set(HeaderBackend, b.name)
	w.Header().Set(HeaderRequestHost, r.Host)
	if code == 0 && b.handler != nil {
		b.handler.ServeHTTP(w, r)
		return
	}
	if code == 0 {
		code = http.StatusOK
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, b.name+"\n")
}

// serveLocked starts serving on ln; b.mu is held.
func (b *HTTP) serveLocked(ln net.Listener) {
	life, stop := context.WithCancel(context.Background())
	b.stopWork = stop
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.serve(w, r, life) })
	if b.load != nil {
		h = b.load.Middleware(h)
	}
	if b.outer != nil {
		h = b.outer(h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // failed handshakes are what tests provoke
	}
	if b.tls != nil {
		srv.TLSConfig = b.tls.Clone()
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	b.srv, b.serveErr = srv, errc
}

// Stop closes the listener and every connection at once, as a crash
// would, and waits for the handlers to return. Restart serves again on the
// same address.
func (b *HTTP) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return ErrStopped
	}
	b.stopWork()
	err := b.srv.Close()
	<-b.serveErr
	b.srv, b.serveErr = nil, nil
	b.handlers.wait()
	return err
}

// Restart serves again on the same address after Stop. It is a no-op on a
// running backend.
func (b *HTTP) Restart() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	ln, err := listen(b.addr)
	if err != nil {
		return err
	}
	b.serveLocked(ln)
	return nil
}

// Close stops the backend if it is running. It is idempotent.
func (b *HTTP) Close() error {
	if err := b.Stop(); err != nil && !errors.Is(err, ErrStopped) {
		return err
	}
	return nil
}

// listen listens on addr, retrying briefly while the port is still taken
// by a connection of the previous incarnation.
func listen(addr string) (net.Listener, error) {
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		// A port below the ephemeral range, so that Restart finds it
		// free (see package ports).
		ln, err := ports.Listen("tcp", host)
		if err != nil {
			return nil, fmt.Errorf("testbackend: listen %s: %w", addr, err)
		}
		return ln, nil
	}
	var err error
	for range 50 {
		var ln net.Listener
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond) // bounded retry on EADDRINUSE, not synchronisation
	}
	return nil, fmt.Errorf("testbackend: listen %s: %w", addr, err)
}
