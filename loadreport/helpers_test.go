package loadreport_test

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// waitFor polls cond until it holds or d passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// protocol is an HTTP version both ends speak on loopback.
type protocol struct {
	name  string
	major int
	set   func(*http.Protocols)
}

var protocols = []protocol{
	{"HTTP/1.1", 1, func(p *http.Protocols) { p.SetHTTP1(true) }},
	{"HTTP/2", 2, func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }},
}

// serveHTTP serves h on a loopback port with protocol p (HTTP/2 without
// TLS, as h2c) until the end of the test, and returns the base URL and a
// client speaking p.
func serveHTTP(t *testing.T, p protocol, h http.Handler) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	p.set(srv.Protocols)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	p.set(tr.Protocols)
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
