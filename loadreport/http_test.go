package loadreport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/loadreport"
)

// get sends a GET and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp, string(body)
}

// reportOf decodes the load report of resp, failing the test without one.
func reportOf(t *testing.T, resp *http.Response) loadreport.Report {
	t.Helper()
	r, err := loadreport.FromHeader(resp.Header, time.Now())
	if err != nil {
		t.Fatalf("%s %s: load report: %v (header %q)", resp.Request.Method, resp.Request.URL.Path, err, resp.Header.Get(loadreport.HeaderName))
	}
	return r
}

// blockingBackend is a handler that counts the requests it is working on,
// by its own count, and holds each one until released.
type blockingBackend struct {
	running atomic.Int64
	release chan struct{}
}

func newBlockingBackend() *blockingBackend {
	return &blockingBackend{release: make(chan struct{})}
}

func (b *blockingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.running.Add(1)
	defer b.running.Add(-1)
	select {
	case <-b.release:
	case <-r.Context().Done():
		return
	}
	// What the backend itself counts when it answers, this request
	// included.
	w.Header().Set("X-Running", strconv.FormatInt(b.running.Load(), 10))
	_, _ = io.WriteString(w, "done")
}

func TestMiddlewareReportsRequestsInFlight(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			const capacity, k = 4, 6
			rep := loadreport.New(loadreport.WithCapacity(capacity))
			backend := newBlockingBackend()
			mux := http.NewServeMux()
			mux.Handle("/work", rep.Middleware(backend))
			mux.Handle("/healthz", rep.ReportOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "ok")
			})))
			url, c := serveHTTP(t, p, mux)

			resp, _ := get(t, c, url+"/healthz")
			if resp.ProtoMajor != p.major {
				t.Fatalf("spoke %s, want %s", resp.Proto, p.name)
			}
			if r := reportOf(t, resp); r.RIF != 0 || !r.HasRIF() || r.Capacity != capacity {
				t.Fatalf("idle server reported %+v, want RIF 0 and capacity %d", r, capacity)
			}

			type answer struct {
				resp *http.Response
				err  error
			}
			answers := make(chan answer, k)
			for range k {
				go func() {
					resp, err := c.Get(url + "/work")
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					answers <- answer{resp, err}
				}()
			}
			waitFor(t, 10*time.Second, "the requests to reach the backend", func() bool { return backend.running.Load() == k })

			// A probe sees every request the backend holds.
			if r := reportOf(t, func() *http.Response { r, _ := get(t, c, url+"/healthz"); return r }()); r.RIF != k {
				t.Fatalf("with %d requests held, the probe's report says RIF %v", k, r.RIF)
			}

			// Each answer reports the requests still held besides itself.
			for i := range k {
				backend.release <- struct{}{}
				a := <-answers
				if a.err != nil {
					t.Fatal(a.err)
				}
				running, _ := strconv.Atoi(a.resp.Header.Get("X-Running"))
				r := reportOf(t, a.resp)
				if want := float64(k - 1 - i); r.RIF != want || r.RIF != float64(running-1) {
					t.Fatalf("answer %d: RIF %v, want %v (the backend counted %d running, itself included)", i, r.RIF, want, running)
				}
				// The next answer must not see this one, which is
				// leaving the middleware.
				waitFor(t, 10*time.Second, "the answered request to be counted out", func() bool { return rep.InFlight() == int64(k-1-i) })
			}
		})
	}
}

func TestMiddlewareUnderConcurrency(t *testing.T) {
	const clients, each = 16, 25
	rep := loadreport.New()
	h := rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			url, c := serveHTTP(t, p, h)
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for range each {
						resp, err := c.Get(url)
						if err != nil {
							t.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						r, err := loadreport.FromHeader(resp.Header, time.Now())
						if err != nil {
							t.Errorf("load report: %v", err)
							return
						}
						if r.RIF < 0 || r.RIF > clients-1 {
							t.Errorf("RIF %v with %d clients", r.RIF, clients)
							return
						}
					}
				})
			}
			wg.Wait()
			waitFor(t, 10*time.Second, "every request to be counted out", func() bool { return rep.InFlight() == 0 })
		})
	}
}

// TestMiddlewareSetsTheHeaderOnEveryWritePath checks that the header goes
// out however the handler starts its answer.
func TestMiddlewareSetsTheHeaderOnEveryWritePath(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		status  int
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, 200},
		{"WriteHeader", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, 204},
		{"Write", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("x")) }, 200},
		{"ReadFrom", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.Copy(w, strings.NewReader(strings.Repeat("x", 100<<10)))
		}, 200},
		{"http.Error", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }, 503},
		{"early hints first", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = w.Write([]byte("x"))
		}, 200},
	}
	for _, p := range protocols {
		for _, c := range cases {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				rep := loadreport.New()
				url, client := serveHTTP(t, p, rep.Middleware(c.handler))
				var informational []textproto.MIMEHeader
				trace := &httptrace.ClientTrace{Got1xxResponse: func(_ int, h textproto.MIMEHeader) error {
					informational = append(informational, h)
					return nil
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
				}
				if r := reportOf(t, resp); r.RIF != 0 {
					t.Fatalf("RIF %v on an otherwise idle server", r.RIF)
				}
				for _, h := range informational {
					if v := h.Get(loadreport.HeaderName); v != "" {
						t.Fatalf("an informational response carried %q", v)
					}
				}
			})
		}
	}
}

// TestMiddlewareKeepsTheWriterFeatures checks Flush, the
// ResponseController features (through Unwrap) and Hijack.
func TestMiddlewareKeepsTheWriterFeatures(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name+"/flush before the body", func(t *testing.T) {
			rep := loadreport.New()
			proceed := make(chan struct{})
			url, c := serveHTTP(t, p, rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				rc := http.NewResponseController(w)
				if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
					t.Errorf("SetWriteDeadline through the middleware: %v", err)
				}
				if err := rc.Flush(); err != nil {
					t.Errorf("Flush through the middleware: %v", err)
				}
				<-proceed
				_, _ = io.WriteString(w, "late")
			})))
			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// The headers arrived while the handler still waits: the
			// report went out with the flush.
			r := reportOf(t, resp)
			close(proceed)
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "late" || r.RIF != 0 {
				t.Fatalf("body %q, report %+v", body, r)
			}
		})
		t.Run(p.name+"/flusher assertion", func(t *testing.T) {
			rep := loadreport.New()
			url, c := serveHTTP(t, p, rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				f, ok := w.(http.Flusher)
				if !ok {
					t.Error("the middleware's writer is not an http.Flusher")
					return
				}
				_, _ = io.WriteString(w, "a")
				f.Flush()
				_, _ = io.WriteString(w, "b")
			})))
			resp, body := get(t, c, url)
			if body != "ab" || resp.Header.Get(loadreport.HeaderName) == "" {
				t.Fatalf("body %q, header %q", body, resp.Header.Get(loadreport.HeaderName))
			}
		})
	}

	t.Run("HTTP/1.1/hijack", func(t *testing.T) {
		rep := loadreport.New()
		url, c := serveHTTP(t, protocols[0], rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("Hijack through the middleware: %v", err)
				return
			}
			defer conn.Close()
			_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
			_ = buf.Flush()
		})))
		resp, body := get(t, c, url)
		if body != "hijacked" || resp.Header.Get(loadreport.HeaderName) != "" {
			t.Fatalf("body %q, header %q", body, resp.Header.Get(loadreport.HeaderName))
		}
		waitFor(t, 10*time.Second, "the hijacked request to be counted out", func() bool { return rep.InFlight() == 0 })
	})
	t.Run("HTTP/2/hijack is not supported", func(t *testing.T) {
		rep := loadreport.New()
		errc := make(chan error, 1)
		url, c := serveHTTP(t, protocols[1], rep.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _, err := http.NewResponseController(w).Hijack()
			errc <- err
		})))
		resp, _ := get(t, c, url)
		if err := <-errc; !errors.Is(err, http.ErrNotSupported) {
			t.Fatalf("Hijack on HTTP/2 = %v, want ErrNotSupported", err)
		}
		if reportOf(t, resp).RIF != 0 {
			t.Fatal("bad report")
		}
	})
}

func TestMiddlewareFormats(t *testing.T) {
	for _, f := range []loadreport.Format{loadreport.FormatText, loadreport.FormatJSON, loadreport.FormatBinary} {
		t.Run(f.String(), func(t *testing.T) {
			rep := loadreport.New(loadreport.WithFormat(f), loadreport.WithCapacity(3))
			rep.SetCPUUtilization(0.25)
			url, c := serveHTTP(t, protocols[0], rep.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
			resp, _ := get(t, c, url)
			v := resp.Header.Get(loadreport.HeaderName)
			if !strings.HasPrefix(v, f.String()+" ") {
				t.Fatalf("header %q is not in the %v format", v, f)
			}
			r := reportOf(t, resp)
			// proto3 formats cannot tell RIF 0 from absent at the top
			// level, but RIF is a named metric and keeps its presence.
			if !r.HasRIF() || r.RIF != 0 || r.Capacity != 3 || r.CPUUtilization != 0.25 {
				t.Fatalf("%v report %+v", f, r)
			}
		})
	}
}
