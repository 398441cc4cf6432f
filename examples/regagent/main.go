package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, out io.Writer) int {
	fs := flag.NewFlagSet("regagent-demo", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	name := fs.String("name", "hello-1", "name in the answers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(out, "regagent-demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "%s: serving on %s (health: GET /healthz; flip it: POST /healthz/fail, POST /healthz/ok)\n", *name, ln.Addr())
	if err := serve(ctx, ln, newService(*name)); err != nil {
		fmt.Fprintf(out, "regagent-demo: %v\n", err)
		return 1
	}
	return 0
}

// service is the demo service's handler.
type service struct {
	name    string
	failing atomic.Bool
	mux     *http.ServeMux
}

func newService(name string) *service {
	s := &service{name: name, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", s.name)
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.failing.Load() {
			http.Error(w, "failing", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("POST /healthz/fail", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(true)
		fmt.Fprintln(w, "health check now fails")
	})
	s.mux.HandleFunc("POST /healthz/ok", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(false)
		fmt.Fprintln(w, "health check now passes")
	})
	return s
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// serve serves h on ln until ctx ends, then shuts down gracefully: the
// sidecar has drained the instance by then, so little is in flight.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-served
	return err
}
