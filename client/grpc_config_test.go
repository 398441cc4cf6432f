package client

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/overload"
)

// The balancer's service config is decoded and validated by
// parseGRPCConfig: a bad one is refused with a message naming the field,
// and durations are strings.
func TestGRPCConfigRefusesBadInputNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		js, want string
	}{
		{`{"policy":"fastest"}`, `policy: client: unknown policy "fastest"`},
		{`{"tieBand":2}`, "tie band 2"},
		{`{"latencyDecay":10}`, `duration must be a string such as "10s", got 10`},
		{`{"unknown":1}`, `unknown field "unknown"`},
		{`{"probe":{"kind":"udp"}}`, `probe: kind "udp"`},
		{`{"overload":{"throttling":{"window":"100ms"}}}`, "overload.throttling: throttling: window 100ms must be at least 1s"},
		{`{"overload":{"throttling":{"k":0.5}}}`, "overload.throttling: throttling: k 0.5 must be at least 1"},
		{`{"overload":{"limits":{"maxRequests":-2}}}`, "overload.limits: limits: maxRequests -2"},
		{`{"overload":{"limits":{"maxPending":10}}}`, "overload.limits.maxPending 10: the gRPC picker cannot make a call wait"},
		{`{"overload":{"breakers":[{"strategy":"error_ratio"},{"strategy":"slow_call_ratio","threshold":2}]}}`, `overload.breakers[1]: breaker "slow_call_ratio": threshold 2 must be a ratio within (0, 1]`},
		{`{"overload":{"breakers":[{"strategy":"fastest"}]}}`, `overload.breakers[0]: breaker "fastest": unknown strategy "fastest"`},
		{`{"overload":{"breakers":[{}]}}`, `overload.breakers[0]: breaker "": strategy is required`},
		{`{"overload":{"breakers":[{"strategy":"error_count","maxRT":"1s"}]}}`, `overload.breakers[0]: breaker "error_count": maxRT applies to slow_call_ratio only`},
		{`{"overload":{"breakers":[{"strategy":"slow_call_ratio","maxRT":800}]}}`, `duration must be a string such as "10s", got 800`},
		{`{"overload":{"breakers":[{"strategy":"error_ratio"},{"strategy":"error_ratio"}]}}`, `overload.breakers: breaker "error_ratio": name used twice`},
		{`{"overload":{"endpointBreakers":[{"strategy":"slow_call_ratio","statWindow":"10ms"}]}}`, `overload.endpointBreakers[0]: breaker "slow_call_ratio": statWindow 10ms must be at least 100ms`},
		{`{"overload":{"endpointMaxRequests":-1}}`, "overload.endpointMaxRequests: endpoint max requests -1 must not be negative"},
		{`{"overload":{"breakers":[{"strategy":"slow_call_ratio","maxLatency":"1s"}]}}`, `unknown field "maxLatency"`},
	} {
		_, err := parseGRPCConfig(json.RawMessage(tc.js))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.js, err, tc.want)
		}
	}
}

// A good overload configuration becomes the guard's settings, durations
// parsed.
func TestGRPCConfigOverloadBecomesTheGuardsSettings(t *testing.T) {
	gc, err := parseGRPCConfig(json.RawMessage(`{"overload":{
		"throttling":{"window":"30s","k":1.5},
		"limits":{"maxRequests":100,"maxRetries":2},
		"breakers":[{"strategy":"slow_call_ratio","maxRT":"800ms","minRequests":5,"statWindow":"10s","retryTimeout":"3s","probes":2}],
		"endpointBreakers":[{"name":"errors","strategy":"error_ratio","threshold":0.4}],
		"endpointMaxRequests":8}}`))
	if err != nil {
		t.Fatal(err)
	}
	opts, _, err := gc.options()
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.overloadOn {
		t.Fatal("overload protection is off")
	}
	g, err := overload.New("api", cfg.overloadOpts...)
	if err != nil {
		t.Fatal(err)
	}
	st := g.Status()
	if len(st.Breakers) != 1 || st.Breakers[0].Strategy != overload.SlowCallRatio {
		t.Fatalf("service breakers %+v", st.Breakers)
	}
	ep := g.Endpoint("10.0.0.1:443").Status()
	if ep.MaxRequests != 8 || len(ep.Breakers) != 1 || ep.Breakers[0].Name != "errors" {
		t.Fatalf("endpoint %+v", ep)
	}
	// The configuration round-trips through JSON (the balancer compares
	// configurations by their JSON).
	js, err := json.Marshal(gc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parseGRPCConfig(js)
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if d := time.Duration(again.Overload.Breakers[0].MaxRT); d != 800*time.Millisecond {
		t.Fatalf("maxRT after a round trip: %v", d)
	}
}

// FuzzGRPCConfig: any input is parsed or refused, never a panic, and what
// is accepted is accepted again after a round trip through JSON.
//
//	go test -fuzz FuzzGRPCConfig ./client
func FuzzGRPCConfig(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"policy":"p2c"}`,
		`{"policy":"least_latency","latencyDecay":"2s","outlierDetection":{"consecutiveFailures":3}}`,
		`{"zone":{"local":"a"},"canary":{"labels":{"canary":"true"},"share":0.1}}`,
		`{"probe":{"kind":"grpc","service":"x","interval":"1s"}}`,
		`{"overload":{}}`,
		`{"overload":{"throttling":{"window":"30s","k":2,"disabled":true}}}`,
		`{"overload":{"limits":{"maxRequests":-1,"maxRetries":5}}}`,
		`{"overload":{"breakers":[{"strategy":"slow_call_ratio","maxRT":"800ms"}],"endpointBreakers":[{"strategy":"error_count","threshold":5}]}}`,
		`{"overload":{"breakers":[{"strategy":"error_ratio","threshold":1.5}]}}`,
		`{"overload":{"endpointMaxRequests":4}}`,
		`{"policy":"consistent_hash"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, js string) {
		gc, err := parseGRPCConfig(json.RawMessage(js))
		if err != nil {
			return
		}
		out, err := json.Marshal(gc)
		if err != nil {
			t.Fatalf("%s: marshal: %v", js, err)
		}
		if _, err := parseGRPCConfig(out); err != nil {
			t.Fatalf("%s accepted, its JSON %s refused: %v", js, out, err)
		}
	})
}
