package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc/serviceconfig"

	"github.com/smartroute/smartroute/probe"
)

// GRPCConfig is the configuration of the "smartroute" gRPC balancer, as it
// appears in a service config:
//
//	{"loadBalancingConfig": [{"smartroute": {
//	    "policy": "least_latency",
//	    "outlierDetection": {"consecutiveFailures": 5, "baseEjectionTime": "30s"},
//	    "zone": {"local": "eu-west-1a"},
//	    "probe": {"kind": "grpc", "interval": "5s"},
//	    "overload": {"breakers": [{"strategy": "slow_call_ratio", "maxRT": "800ms"}]}
//	}}]}
//
// Every field is optional; durations are strings in Go syntax ("500ms",
// "10s"). Unknown fields are an error that names them.
type GRPCConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	Policy         string            `json:"policy,omitempty"`
	TieBand        *float64          `json:"tieBand,omitempty"`
	LatencyDecay   Duration          `json:"latencyDecay,omitempty"`
	DefaultRTT     Duration          `json:"defaultRtt,omitempty"`
	FailurePenalty Duration          `json:"failurePenalty,omitempty"`
	PanicThreshold *float64          `json:"panicThreshold,omitempty"`
	SlowStart      Duration          `json:"slowStart,omitempty"`
	LabelSelector  map[string]string `json:"labelSelector,omitempty"`
	// HashHeader is the request metadata key whose value is the
	// consistent_hash key.
	HashHeader       string                `json:"hashHeader,omitempty"`
	OutlierDetection *grpcOutlierDetection `json:"outlierDetection,omitempty"`
	Zone             *Zone                 `json:"zone,omitempty"`
	Canary           *Canary               `json:"canary,omitempty"`
	Probe            *GRPCProbeConfig      `json:"probe,omitempty"`
	// Overload turns on overload protection (WithOverload; see
	// GRPCOverload): throttling, breakers and limits in the picker.
	Overload *GRPCOverload `json:"overload,omitempty"`
}

// GRPCProbeConfig configures the balancer's active checks.
type GRPCProbeConfig struct {
	// Kind is "tcp" (default: connect time), "grpc" (grpc.health.v1 Check
	// with Service) or "none" (health from the subchannels only, e.g. with
	// gRPC's client-side health checking in the service config).
	Kind     string   `json:"kind,omitempty"`
	Service  string   `json:"service,omitempty"`
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	Rise     int      `json:"rise,omitempty"`
	Fall     int      `json:"fall,omitempty"`
}

type grpcOutlierDetection struct {
	ConsecutiveFailures int      `json:"consecutiveFailures,omitempty"`
	BaseEjectionTime    Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionTime     Duration `json:"maxEjectionTime,omitempty"`
	MaxEjectedShare     float64  `json:"maxEjectedShare,omitempty"`
	Disabled            bool     `json:"disabled,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string.
type Duration time.Duration

// UnmarshalJSON parses "1.5s"-style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// parseGRPCConfig decodes and validates a balancer configuration.
func parseGRPCConfig(js json.RawMessage) (*GRPCConfig, error) {
	cfg := &GRPCConfig{}
	if len(bytes.TrimSpace(js)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, fmt.Errorf("smartroute balancer: config: %w", err)
		}
	}
	if _, _, err := cfg.options(); err != nil {
		return nil, fmt.Errorf("smartroute balancer: config: %w", err)
	}
	return cfg, nil
}

// options turns the configuration into client options, validated, and the
// probe settings.
func (g *GRPCConfig) options() ([]Option, *GRPCProbeConfig, error) {
	var opts []Option
	if g.Policy != "" {
		p, err := ParsePolicy(g.Policy)
		if err != nil {
			return nil, nil, fmt.Errorf("policy: %w", err)
		}
		opts = append(opts, WithPolicy(p))
	}
	if g.TieBand != nil {
		opts = append(opts, WithTieBand(*g.TieBand))
	}
	if g.LatencyDecay != 0 {
		opts = append(opts, WithLatencyDecay(time.Duration(g.LatencyDecay)))
	}
	if g.DefaultRTT != 0 {
		opts = append(opts, WithDefaultRTT(time.Duration(g.DefaultRTT)))
	}
	if g.FailurePenalty != 0 {
		opts = append(opts, WithFailurePenalty(time.Duration(g.FailurePenalty)))
	}
	if g.PanicThreshold != nil {
		opts = append(opts, WithPanicThreshold(*g.PanicThreshold))
	}
	if g.SlowStart != 0 {
		opts = append(opts, WithSlowStart(time.Duration(g.SlowStart)))
	}
	if g.LabelSelector != nil {
		opts = append(opts, WithLabelSelector(g.LabelSelector))
	}
	if g.OutlierDetection != nil {
		o := g.OutlierDetection
		opts = append(opts, WithOutlierDetection(OutlierDetection{
			ConsecutiveFailures: o.ConsecutiveFailures,
			BaseEjectionTime:    time.Duration(o.BaseEjectionTime),
			MaxEjectionTime:     time.Duration(o.MaxEjectionTime),
			MaxEjectedShare:     o.MaxEjectedShare,
			Disabled:            o.Disabled,
		}))
	}
	if g.Zone != nil {
		opts = append(opts, WithZone(*g.Zone))
	}
	if g.Canary != nil {
		opts = append(opts, WithCanary(*g.Canary))
	}
	if g.Overload != nil {
		ov, err := g.Overload.options()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, WithOverload(ov...))
	}
	pc := g.Probe
	if pc == nil {
		pc = &GRPCProbeConfig{}
	}
	switch pc.Kind {
	case "", "tcp", "grpc", "none":
	default:
		return nil, nil, fmt.Errorf("probe: kind %q is not tcp, grpc or none", pc.Kind)
	}
	if pc.Rise < 0 || pc.Fall < 0 {
		return nil, nil, fmt.Errorf("probe: rise %d and fall %d must not be negative", pc.Rise, pc.Fall)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.policy == ConsistentHash && g.HashHeader == "" {
		return nil, nil, fmt.Errorf("policy %s needs hashHeader", ConsistentHash)
	}
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	return opts, pc, nil
}

// probeOptions returns the prober and its options for pc, or nil for none.
func (pc *GRPCProbeConfig) checker() probe.Checker {
	switch pc.Kind {
	case "none":
		return nil
	case "grpc":
		return probe.GRPCHealth{Service: pc.Service}
	}
	return probe.TCP{}
}

func (pc *GRPCProbeConfig) probeOptions() []probe.Option {
	var opts []probe.Option
	if pc.Interval > 0 {
		opts = append(opts, probe.WithInterval(time.Duration(pc.Interval)))
	}
	if pc.Timeout > 0 {
		opts = append(opts, probe.WithTimeout(time.Duration(pc.Timeout)))
	}
	if pc.Rise > 0 {
		opts = append(opts, probe.WithRise(pc.Rise))
	}
	if pc.Fall > 0 {
		opts = append(opts, probe.WithFall(pc.Fall))
	}
	return opts
}
