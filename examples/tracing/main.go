// Command tracing shows the OpenTelemetry attributes smartroute writes on
// the caller's span: it routes one request over two local backends, the
// first of which answers 503, and exports the span to stdout with the
// OpenTelemetry SDK's stdouttrace exporter.
//
//	go run ./examples/tracing
//
// The span's attributes say where the request went and why
// (smartroute.endpoint, smartroute.pick.reason, smartroute.attempts,
// smartroute.retries, ...); its events, one per attempt, say where each
// attempt went, how it ended and the endpoint's health and ejection state
// at the pick. The client package uses only the OpenTelemetry API; the
// SDK and the exporter are this program's choice.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/resolver"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves two backends on loopback, sends one traced request through a
// smartroute client and writes the exported span to w.
func run(ctx context.Context, w io.Writer) error {
	failing, err := serve(http.StatusServiceUnavailable)
	if err != nil {
		return err
	}
	defer failing.Close()
	working, err := serve(http.StatusOK)
	if err != nil {
		return err
	}
	defer working.Close()

	// The SDK and an exporter: in production an OTLP exporter instead.
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(ctx)

	// Round robin over the failing backend first: the request is retried
	// on the other one, and the span tells it.
	r, err := resolver.NewStatic(failing.Addr().String(), working.Addr().String())
	if err != nil {
		return err
	}
	c, err := client.NewFromResolver("api", r, client.WithPolicy(client.RoundRobin))
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		return err
	}

	for range 2 { // round robin starts anywhere: the second request starts on the other backend
		sctx, span := tp.Tracer("example").Start(wctx, "GET http://api/")
		req, err := http.NewRequestWithContext(sctx, http.MethodGet, "http://api/", nil)
		if err != nil {
			return err
		}
		resp, err := c.RoundTrip(req)
		if err != nil {
			span.End()
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		span.End()
	}
	return tp.ForceFlush(ctx)
}

// backend is a local HTTP server answering status.
type backend struct {
	ln  net.Listener
	srv *http.Server
}

func serve(status int) (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			fmt.Fprintln(w, http.StatusText(status))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	return &backend{ln: ln, srv: srv}, nil
}

func (b *backend) Addr() net.Addr { return b.ln.Addr() }
func (b *backend) Close()         { b.srv.Close() }
