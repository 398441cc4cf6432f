package mtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// Names used across the tests: the server identity "api" answers for
// api.test, the client identity "web" for web.test.
const (
	apiName = "api.test"
	webName = "web.test"
)

// env is one test's etcd, CA and keyring.
type env struct {
	t    testing.TB
	etcd *etcdtest.Cluster
	cli  *clientv3.Client
	ca   *certgen.CA
	kek  KEK
	kr   *Keyring
	logs *syncBuffer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, etcd: etcdtest.Start(t), ca: certgen.NewCA(t, "ca-1"), logs: &syncBuffer{}}
	e.cli = e.etcd.Client(t)
	var err error
	if e.kek, err = GenerateKEK("kek-1"); err != nil {
		t.Fatal(err)
	}
	if e.kr, err = NewKeyring(e.kek); err != nil {
		t.Fatal(err)
	}
	e.publishCA(e.ca.PEM)
	return e
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) publishCA(bundle ...[]byte) int64 {
	e.t.Helper()
	rev, err := PublishCA(ctxT(e.t, 10*time.Second), e.cli, bytes.Join(bundle, nil))
	if err != nil {
		e.t.Fatalf("PublishCA: %v", err)
	}
	return rev
}

func (e *env) publish(name string, l *certgen.Leaf) int64 {
	e.t.Helper()
	rev, err := Publish(ctxT(e.t, 10*time.Second), e.cli, e.kr, name, l.CertPEM, l.KeyPEM)
	if err != nil {
		e.t.Fatalf("Publish %s: %v", name, err)
	}
	return rev
}

// put writes raw values in one transaction, bypassing Publish's checks.
func (e *env) put(kvs ...string) int64 {
	e.t.Helper()
	var ops []clientv3.Op
	for i := 0; i+1 < len(kvs); i += 2 {
		ops = append(ops, clientv3.OpPut(kvs[i], kvs[i+1]))
	}
	resp, err := e.cli.Txn(ctxT(e.t, 10*time.Second)).Then(ops...).Commit()
	if err != nil {
		e.t.Fatalf("put: %v", err)
	}
	return resp.Header.Revision
}

// store opens a Store on the env's etcd with the env's keyring and a
// logger that writes to e.logs and to the test log.
func (e *env) store(opts ...Option) *Store {
	e.t.Helper()
	base := []Option{WithKeyring(e.kr), WithLogger(e.logger())}
	s, err := NewStore(ctxT(e.t, 10*time.Second), e.cli, append(base, opts...)...)
	if err != nil {
		e.t.Fatalf("NewStore: %v", err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// logger writes to e.logs and to the test log.
func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testWriter{e.t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitRev(t testing.TB, s *Store, rev int64) {
	t.Helper()
	if err := s.WaitRevision(ctxT(t, 10*time.Second), rev); err != nil {
		t.Fatal(err)
	}
}

func ready(t testing.TB, s *Store, names ...string) {
	t.Helper()
	if err := s.Ready(ctxT(t, 10*time.Second), names...); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testWriter sends log lines to t.Log until the test ends.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is an HTTPS server on loopback whose handler answers with the
// serial of the client's certificate.
type server struct {
	addr string
	srv  *http.Server
}

func serve(t testing.TB, cfg *tls.Config) *server {
	t.Helper()
	return serveOn(t, cfg, nil)
}

// serveTracked serves cfg through s.NewListener, so that s closes the
// connections of clients it no longer allows.
func serveTracked(t testing.TB, s *Store, cfg *tls.Config) *server {
	t.Helper()
	return serveOn(t, cfg, s)
}

func serveOn(t testing.TB, cfg *tls.Config, tracker *Store) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				http.Error(w, "no client certificate", http.StatusForbidden)
				return
			}
			io.WriteString(w, serialHex(r.TLS.PeerCertificates[0]))
		}),
		TLSConfig:         cfg,
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tracker != nil {
			srv.Serve(tracker.NewListener(l, cfg))
			return
		}
		srv.ServeTLS(l, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &server{addr: l.Addr().String(), srv: srv}
}

// httpClient returns a client over cfg; with fresh it opens a new
// connection (and so a new handshake) for every request.
func httpClient(t testing.TB, cfg *tls.Config, fresh bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: fresh, ForceAttemptHTTP2: false}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// dialClient returns a client whose connections s dials and tracks
// (DialTLS); with fresh, a new connection per request.
func dialClient(t testing.TB, s *Store, cfg *tls.Config, fresh bool) *http.Client {
	tr := &http.Transport{DialTLSContext: s.DialTLS(cfg, nil), DisableKeepAlives: fresh}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// result is what one request saw: the server's serial and the client
// serial the server saw.
type result struct {
	server, client string
}

func get(c *http.Client, addr string) (result, error) {
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return result{server: serialHex(resp.TLS.PeerCertificates[0]), client: string(body)}, nil
}

func mustGet(t testing.TB, c *http.Client, addr string) result {
	t.Helper()
	r, err := get(c, addr)
	if err != nil {
		t.Fatalf("GET https://%s: %v", addr, err)
	}
	return r
}

// load makes requests over new connections until stopped, and counts.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
	last       atomic.Pointer[result]
	stop       chan struct{}
	done       chan struct{}
}

func startLoad(t testing.TB, c *http.Client, addr string, workers int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := get(c, addr)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				l.last.Store(&r)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// check stops the load and fails the test on any failed request.
func (l *load) check(t testing.TB) {
	t.Helper()
	l.end()
	t.Logf("load: %d requests over new connections, %d failed", l.ok.Load(), l.failed.Load())
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d requests failed, e.g. %v", n, errors.Join(l.errs...))
	}
	if l.ok.Load() == 0 {
		t.Fatal("no request succeeded")
	}
}

// counter reads a counter (or gauge) of the registry: the sum of its
// series whose label is value.
func counter(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if m.Counter != nil {
						sum += m.Counter.GetValue()
					} else {
						sum += m.Gauge.GetValue()
					}
				}
			}
		}
	}
	return sum
}

// more waits until n more requests have succeeded (or one failed), so that
// every step of a scenario is crossed by traffic.
func (l *load) more(t testing.TB, n int64) {
	t.Helper()
	base := l.ok.Load()
	waitFor(t, 30*time.Second, "requests go on", func() bool { return l.ok.Load() >= base+n || l.failed.Load() > 0 })
}
