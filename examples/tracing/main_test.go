package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// exportedSpan is what stdouttrace writes of a span, as far as the test
// reads it.
type exportedSpan struct {
	Name       string
	Attributes []struct {
		Key   string
		Value struct{ Value any }
	}
	Events []struct {
		Name       string
		Attributes []struct {
			Key   string
			Value struct{ Value any }
		}
	}
}

func (s exportedSpan) attr(key string) any {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value.Value
		}
	}
	return nil
}

// TestTraceExampleExportsTheRetryToStdout runs the example and reads its
// output as a user would: one span shows the retry, with the endpoint
// picked and why, and one event per attempt.
func TestTraceExampleExportsTheRetryToStdout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	var retried *exportedSpan
	n := 0
	for {
		var s exportedSpan
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("output is not stdouttrace's JSON: %v", err)
		}
		n++
		if s.attr("smartroute.retries") == float64(1) {
			retried = &s
		}
	}
	if n != 2 || retried == nil {
		t.Fatalf("%d spans exported, retried %v; want 2, one with a retry:\n%s", n, retried, out.String())
	}
	for _, key := range []string{"smartroute.service", "smartroute.policy", "smartroute.endpoint", "smartroute.pick.reason", "smartroute.attempts", "smartroute.endpoint.ejected"} {
		if retried.attr(key) == nil {
			t.Errorf("the span lacks %s", key)
		}
	}
	if retried.attr("smartroute.outcome") != "ok" || retried.attr("smartroute.attempts") != float64(2) {
		t.Errorf("outcome %v after %v attempts, want ok after 2", retried.attr("smartroute.outcome"), retried.attr("smartroute.attempts"))
	}
	if len(retried.Events) != 2 || retried.Events[0].Name != "smartroute.attempt" {
		t.Errorf("events %+v, want two attempts", retried.Events)
	}
}
