package client_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// recorder returns a tracer whose ended spans rec keeps.
func recorder(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), rec
}

// attrs returns a span's or event's attributes by key.
func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		out[kv.Key] = kv.Value
	}
	return out
}

// tracedGet sends GET http://api/ through c under a new span and returns
// the ended span.
func tracedGet(t *testing.T, c *client.Client, tracer trace.Tracer, rec *tracetest.SpanRecorder) sdktrace.ReadOnlySpan {
	t.Helper()
	ctx, span := tracer.Start(ctxFor(t, 10*time.Second), "GET api")
	if _, err := get(ctx, c, "http"); err != nil {
		t.Fatalf("request: %v", err)
	}
	span.End()
	spans := rec.Ended()
	return spans[len(spans)-1]
}

func TestTraceHTTPRetryNamesEachAttemptOnTheCallersSpan(t *testing.T) {
	bad := testbackend.MustHTTP(t, testbackend.WithName("bad"), testbackend.WithStatus(http.StatusServiceUnavailable))
	good := testbackend.MustHTTP(t, testbackend.WithName("good"))
	c := staticClient(t, endpointsOf(bad.Addr(), good.Addr()), client.WithPolicy(client.RoundRobin))
	tracer, rec := recorder(t)

	// Round robin alternates: within two requests one starts on the
	// failing backend and is retried on the good one.
	var sp sdktrace.ReadOnlySpan
	for range 2 {
		sp = tracedGet(t, c, tracer, rec)
		if len(sp.Events()) == 2 {
			break
		}
	}
	a := attrs(sp.Attributes())
	if a[client.TraceService].AsString() != "api" || a[client.TracePolicy].AsString() != "round_robin" {
		t.Errorf("service %v policy %v", a[client.TraceService], a[client.TracePolicy])
	}
	if a[client.TraceEndpoint].AsString() != good.Addr() || a[client.TraceAttempts].AsInt64() != 2 ||
		a[client.TraceRetries].AsInt64() != 1 || a[client.TraceHedges].AsInt64() != 0 || a[client.TraceOutcome].AsString() != "ok" {
		t.Errorf("span attributes %v: want the good endpoint after 2 attempts, 1 retry, ok", sp.Attributes())
	}
	ev := sp.Events()
	if len(ev) != 2 || ev[0].Name != client.TraceEventAttempt {
		t.Fatalf("events %v, want two attempts", ev)
	}
	first, second := attrs(ev[0].Attributes), attrs(ev[1].Attributes)
	if first[client.TraceEndpoint].AsString() != bad.Addr() || first[client.TraceAttempt].AsInt64() != 1 ||
		first[client.TraceAttemptKind].AsString() != "first" || first[client.TraceOutcome].AsString() != "http_5xx" {
		t.Errorf("first attempt %v", ev[0].Attributes)
	}
	if second[client.TraceEndpoint].AsString() != good.Addr() || second[client.TraceAttempt].AsInt64() != 2 ||
		second[client.TraceAttemptKind].AsString() != "retry" || second[client.TraceOutcome].AsString() != "ok" {
		t.Errorf("second attempt %v", ev[1].Attributes)
	}
	for _, e := range []map[attribute.Key]attribute.Value{first, second} {
		if e[client.TracePickReason].AsString() == "" || e[client.TraceEndpointHealth].AsString() == "" {
			t.Errorf("attempt without reason or health: %v", e)
		}
		if _, ok := e[client.TraceEndpointEjected]; !ok {
			t.Errorf("attempt without ejection state: %v", e)
		}
		if _, ok := e[client.TraceEndpointBreakerOpen]; !ok {
			t.Errorf("attempt without breaker state: %v", e)
		}
	}
}

func TestTraceHTTPHedgeIsNamedAHedge(t *testing.T) {
	bs := backends(t, 2, 300*time.Millisecond)
	c := staticClient(t, endpointsOf(addrs(bs)...),
		client.WithHedging(client.Hedging{Delay: 20 * time.Millisecond, MaxHedges: 1}))
	tracer, rec := recorder(t)
	sp := tracedGet(t, c, tracer, rec)
	a := attrs(sp.Attributes())
	if a[client.TraceAttempts].AsInt64() != 2 || a[client.TraceHedges].AsInt64() != 1 || a[client.TraceRetries].AsInt64() != 0 {
		t.Errorf("span attributes %v: want 2 attempts, 1 hedge", sp.Attributes())
	}
	kinds := map[string]bool{}
	for _, e := range sp.Events() {
		kinds[attrs(e.Attributes)[client.TraceAttemptKind].AsString()] = true
	}
	// The abandoned attempt may end after the span: its event is then
	// dropped, as OpenTelemetry drops events on ended spans.
	if !kinds["first"] && !kinds["hedge"] {
		t.Errorf("events %v name no attempt kind", sp.Events())
	}
}

func TestTraceNothingWithoutARecordingSpan(t *testing.T) {
	b := testbackend.MustHTTP(t)
	c := staticClient(t, endpointsOf(b.Addr()))
	// A non-recording span (no SDK): the request goes through untouched.
	ctx := trace.ContextWithSpanContext(ctxFor(t, 5*time.Second), trace.SpanContext{})
	if _, err := get(ctx, c, "http"); err != nil {
		t.Fatal(err)
	}
}

func TestTraceGRPCPickOnTheCallersSpan(t *testing.T) {
	e := newGRPCEnv(t)
	b, _ := e.serve("s1", 0)
	cli := e.dial(`{"policy":"round_robin",`+fastGRPCProbe+`}`, "")
	tracer, rec := recorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, 10*time.Second, "an RPC to succeed", func() bool { _, err := call(ctx, cli); return err == nil })
	sctx, span := tracer.Start(ctx, "EmptyCall")
	if _, err := call(sctx, cli); err != nil {
		t.Fatal(err)
	}
	span.End()
	spans := rec.Ended()
	sp := spans[len(spans)-1]
	a := attrs(sp.Attributes())
	if a[client.TraceEndpoint].AsString() != b.Addr() || a[client.TracePolicy].AsString() != "round_robin" ||
		a[client.TraceService].AsString() != "grpc.testing.TestService" || a[client.TracePickReason].AsString() == "" {
		t.Errorf("span attributes %v", sp.Attributes())
	}
	if ev := sp.Events(); len(ev) != 1 || ev[0].Name != client.TraceEventPick || attrs(ev[0].Attributes)[client.TraceOutcome].AsString() != "ok" {
		t.Errorf("events %v, want one pick that ended ok", ev)
	}
}
