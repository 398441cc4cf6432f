package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"

	"github.com/smartroute/smartroute/overload"
)

// Overload protection in the gRPC balancer. The picker does it all for
// unary RPCs: it asks the service's guard before it picks (throttling,
// service breakers, service limits; an RPC whose context carries
// overload.RetryContext counts as a retry, while gRPC's own retry attempts,
// which a picker cannot tell apart, count as first attempts), then the
// picked endpoint's
// breakers and limit, passing over endpoints that refuse, and its Done
// callback tells both how the RPC ended. A refusal fails the RPC at once,
// wait-for-ready or not, with the *overload.RejectedError, whose status is
// codes.Unavailable with a message naming the throttle, breaker or limit.
//
// Two things a picker cannot do, and what does them instead:
//
//   - answer a refused RPC: OverloadFallbackInterceptor, a unary
//     interceptor, turns the refusals into the fallback's answer;
//   - wait for a slot (Limits.MaxPending): gRPC's Pick must not block, so
//     the service config refuses maxPending, and a full limit refuses at
//     once. overload.UnaryClientInterceptor with a Guard of your own queues
//     calls, if you need that.
//
// Streams are not guarded (their length says nothing of the service's
// latency, and they would hold a slot for as long as they live); an
// endpoint whose breaker is open gets no new streams either.

// The picker holds its admission by pointer, nil for an RPC that is not
// guarded (no guard, or a stream): the unguarded pick pays a nil check.

// admitEndpoint has ep's breakers and limit admit a guarded RPC; a nil
// admission admits everything.
func (a *admission) admitEndpoint(s *snapshot, ep *endpoint) error {
	if a == nil {
		return nil
	}
	return a.admitGuarded(s, ep)
}

//go:noinline
func (a *admission) admitGuarded(s *snapshot, ep *endpoint) error {
	tk, err := s.admit(noWait, ep)
	if err != nil {
		return err
	}
	a.ep = tk
	return nil
}

// releaseIf gives back the tickets of a guarded RPC that will not be sent.
func (a *admission) releaseIf() {
	if a != nil {
		a.release()
	}
}

// chain hands the RPC's end to the admission's tickets, after res's Done
// (the table's own). A pick gRPC did not use (Done without an error and
// without bytes) gives them back. A nil admission leaves res as it is.
func (a *admission) chain(res *balancer.PickResult) {
	if a == nil {
		return
	}
	next := res.Done
	res.Done = func(di balancer.DoneInfo) {
		if next != nil {
			next(di)
		}
		if di.Err == nil && !di.BytesSent && !di.BytesReceived {
			a.release()
			return
		}
		a.done(overload.Outcome{Err: di.Err})
	}
}

// OverloadFallbackInterceptor answers the unary calls that the smartroute
// balancer's overload protection refuses (the service config's
// "overload", or RegisterGRPCBalancer(WithOverload(…))) with f instead of
// the error: f gets the call and the *overload.RejectedError, may fill
// reply, and its error is the call's. Other errors pass through.
//
//	conn, err := grpc.NewClient("etcd:///payments",
//		grpc.WithUnaryInterceptor(client.OverloadFallbackInterceptor(cached)), …)
func OverloadFallbackInterceptor(f overload.UnaryFallback) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if rejected(err) {
			return f(ctx, method, req, reply, err)
		}
		return err
	}
}

// GRPCOverload is overload protection in the balancer's service config:
// the overload package's settings (WithOverload) with durations as strings.
// Its presence turns protection on; every field is optional, and zero
// fields take the overload package's defaults:
//
//	"overload": {
//	    "throttling": {"window": "30s", "k": 2},
//	    "limits": {"maxRequests": 512, "maxRetries": 3},
//	    "breakers": [{"strategy": "slow_call_ratio", "maxRT": "800ms", "statWindow": "10s"}],
//	    "endpointBreakers": [{"strategy": "error_ratio", "threshold": 0.5}],
//	    "endpointMaxRequests": 64
//	}
type GRPCOverload struct {
	// Throttling is adaptive throttling (default: on, with the SRE
	// book's settings; "disabled": true turns it off).
	Throttling *GRPCThrottling `json:"throttling,omitempty"`
	// Limits are the service's concurrency limits. maxPending must be 0:
	// a picker cannot make a call wait.
	Limits *overload.Limits `json:"limits,omitempty"`
	// Breakers are the service's circuit breakers, EndpointBreakers the
	// ones kept per endpoint.
	Breakers         []GRPCBreakerRule `json:"breakers,omitempty"`
	EndpointBreakers []GRPCBreakerRule `json:"endpointBreakers,omitempty"`
	// EndpointMaxRequests bounds the RPCs in flight to each endpoint (0:
	// no bound).
	EndpointMaxRequests int `json:"endpointMaxRequests,omitempty"`
}

// GRPCThrottling is overload.Throttling with its window as a string.
type GRPCThrottling struct {
	Window               Duration `json:"window,omitempty"`
	Buckets              int      `json:"buckets,omitempty"`
	K                    float64  `json:"k,omitempty"`
	MaxRejectProbability float64  `json:"maxRejectProbability,omitempty"`
	Disabled             bool     `json:"disabled,omitempty"`
}

// GRPCBreakerRule is overload.BreakerRule with its durations as strings.
type GRPCBreakerRule struct {
	Name         string            `json:"name,omitempty"`
	Strategy     overload.Strategy `json:"strategy"`
	Threshold    float64           `json:"threshold,omitempty"`
	MaxRT        Duration          `json:"maxRT,omitempty"`
	MinRequests  int               `json:"minRequests,omitempty"`
	StatWindow   Duration          `json:"statWindow,omitempty"`
	Buckets      int               `json:"buckets,omitempty"`
	RetryTimeout Duration          `json:"retryTimeout,omitempty"`
	Probes       int               `json:"probes,omitempty"`
}

func (r GRPCBreakerRule) rule() overload.BreakerRule {
	return overload.BreakerRule{
		Name: r.Name, Strategy: r.Strategy, Threshold: r.Threshold, MaxRT: time.Duration(r.MaxRT),
		MinRequests: r.MinRequests, StatWindow: time.Duration(r.StatWindow), Buckets: r.Buckets,
		RetryTimeout: time.Duration(r.RetryTimeout), Probes: r.Probes,
	}
}

// options validates the configuration, part by part so that an error
// names its field (overload.breakers[1]: …), and returns it as overload
// options.
func (o *GRPCOverload) options() ([]overload.Option, error) {
	// check builds a throwaway guard with opts: the overload package
	// validates its own settings, and says what is wrong.
	check := func(field string, opts ...overload.Option) error {
		if _, err := overload.New("config", opts...); err != nil {
			return fmt.Errorf("overload.%s: %s", field, strings.TrimPrefix(err.Error(), "overload: "))
		}
		return nil
	}
	var opts []overload.Option
	add := func(field string, opt overload.Option) error {
		if err := check(field, opt); err != nil {
			return err
		}
		opts = append(opts, opt)
		return nil
	}
	if t := o.Throttling; t != nil {
		opt := overload.WithThrottling(overload.Throttling{Window: time.Duration(t.Window), Buckets: t.Buckets, K: t.K,
			MaxRejectProbability: t.MaxRejectProbability, Disabled: t.Disabled})
		if err := add("throttling", opt); err != nil {
			return nil, err
		}
	}
	if l := o.Limits; l != nil {
		if l.MaxPending != 0 {
			return nil, fmt.Errorf("overload.limits.maxPending %d: the gRPC picker cannot make a call wait (Pick must not block); leave it 0, or queue with overload.UnaryClientInterceptor", l.MaxPending)
		}
		if err := add("limits", overload.WithLimits(*l)); err != nil {
			return nil, err
		}
	}
	for _, part := range []struct {
		field string
		rules []GRPCBreakerRule
		with  func(...overload.BreakerRule) overload.Option
	}{{"breakers", o.Breakers, overload.WithBreakers}, {"endpointBreakers", o.EndpointBreakers, overload.WithEndpointBreakers}} {
		if part.rules == nil {
			continue
		}
		rules := make([]overload.BreakerRule, len(part.rules))
		for i, r := range part.rules {
			rules[i] = r.rule()
			if err := check(fmt.Sprintf("%s[%d]", part.field, i), part.with(rules[i])); err != nil {
				return nil, err
			}
		}
		if err := add(part.field, part.with(rules...)); err != nil {
			return nil, err
		}
	}
	if o.EndpointMaxRequests != 0 {
		if err := add("endpointMaxRequests", overload.WithEndpointMaxRequests(o.EndpointMaxRequests)); err != nil {
			return nil, err
		}
	}
	return opts, nil
}
