package overload

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Guard.
type Option func(*config)

// config is a Guard's resolved configuration, immutable once built.
type config struct {
	throttling          Throttling
	limits              Limits
	breakers            []BreakerRule
	endpointBreakers    []BreakerRule
	endpointMaxRequests int
	classify            Classifier
	listeners           []func(StateChange)
	logger              *slog.Logger
	registerer          prometheus.Registerer
	perEndpointMetrics  bool
	clock               Clock
}

func defaultConfig() config {
	return config{
		throttling: Throttling{}.withDefaults(),
		limits:     Limits{}.withDefaults(),
		classify:   DefaultClassifier,
	}
}

func (c *config) validate() error {
	if !c.throttling.Disabled {
		if err := c.throttling.validate(); err != nil {
			return err
		}
	}
	if err := c.limits.validate(); err != nil {
		return err
	}
	if c.endpointMaxRequests < 0 {
		return fmt.Errorf("overload: endpoint max requests %d must not be negative", c.endpointMaxRequests)
	}
	for _, rules := range [][]BreakerRule{c.breakers, c.endpointBreakers} {
		seen := map[string]bool{}
		for _, r := range rules {
			if err := r.validate(); err != nil {
				return err
			}
			r = r.withDefaults()
			if seen[r.Name] {
				return fmt.Errorf("overload: breaker %q: name used twice (give each rule of a strategy its own Name)", r.Name)
			}
			seen[r.Name] = true
		}
	}
	return nil
}

// WithThrottling configures adaptive throttling; zero fields take their
// defaults. Throttling is on by default.
func WithThrottling(t Throttling) Option {
	return func(c *config) {
		disabled := t.Disabled
		c.throttling = t.withDefaults()
		c.throttling.Disabled = disabled
	}
}

// WithoutThrottling turns adaptive throttling off.
func WithoutThrottling() Option { return func(c *config) { c.throttling.Disabled = true } }

// WithLimits sets the service's concurrency limits; zero fields take their
// defaults (Envoy's: 1024 requests and 3 retries in flight, nobody
// waiting).
func WithLimits(l Limits) Option { return func(c *config) { c.limits = l.withDefaults() } }

// WithBreakers sets the service's circuit breakers (default: none). A
// request passes only if every breaker lets it.
func WithBreakers(rules ...BreakerRule) Option {
	return func(c *config) { c.breakers = append([]BreakerRule(nil), rules...) }
}

// WithEndpointBreakers sets circuit breakers kept per endpoint (default:
// none): a balancer consults them through Allow and Endpoint, and a
// breaker open on one endpoint takes it out of rotation as an ejection
// would.
func WithEndpointBreakers(rules ...BreakerRule) Option {
	return func(c *config) { c.endpointBreakers = append([]BreakerRule(nil), rules...) }
}

// WithEndpointMaxRequests bounds the requests in flight to each endpoint
// (default 0: no bound), as Envoy's per-host thresholds do.
func WithEndpointMaxRequests(n int) Option { return func(c *config) { c.endpointMaxRequests = n } }

// WithClassifier sets how a finished request's Outcome becomes a Verdict
// (default DefaultClassifier): what counts as accepted for throttling and
// as an error for breakers.
func WithClassifier(f Classifier) Option {
	return func(c *config) {
		if f != nil {
			c.classify = f
		}
	}
}

// WithStateListener calls f on every breaker state change, service and
// endpoint breakers alike. f runs synchronously, on the goroutine of the
// request that caused the change, while the breaker holds its lock: it must
// be quick and must not use the same breaker (hand the event to a channel
// if there is more to do). Each WithStateListener adds a listener; they
// are called in the order they were given (package client adds its own
// after the caller's).
func WithStateListener(f func(StateChange)) Option {
	return func(c *config) {
		if f != nil {
			c.listeners = append(c.listeners, f)
		}
	}
}

// WithLogger sets the logger (default slog.Default()). Breakers log their
// changes, throttling logs when it starts and stops rejecting; nothing is
// logged per request.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRegisterer registers the guard's metrics on r (default: none).
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// WithPerEndpointMetrics adds a breaker-state series per endpoint (the
// endpoint label is unbounded, hence opt-in).
func WithPerEndpointMetrics() Option { return func(c *config) { c.perEndpointMetrics = true } }

// WithClock sets the clock (default: the system's monotonic clock). Tests
// use it to step breakers and windows through time without sleeping.
func WithClock(clk Clock) Option { return func(c *config) { c.clock = clk } }
