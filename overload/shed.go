package overload

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/metrics"
)

// Shedder is the server side of overload protection: it bounds the
// requests a server handles at once, and refuses the rest at once, cheaply,
// with a signal that clients' throttling understands: HTTP 503 with
// Retry-After, gRPC ResourceExhausted with a retry pushback. A server that
// queues without bound instead works on requests whose callers have long
// given up; one that sheds keeps answering the requests it takes in time.
//
// Put it outermost, in front of the work the limit protects:
//
//	s, err := overload.NewShedder(64)
//	http.ListenAndServe(addr, s.Middleware(mux))
//	grpc.NewServer(grpc.UnaryInterceptor(s.UnaryServerInterceptor()), grpc.StreamInterceptor(s.StreamServerInterceptor()))
//
// Set the limit to what the server handles at once with good latency
// (its workers or connection-pool size, times about 2 so that a short
// queue smooths bursts). A Shedder is safe for concurrent use and owns no
// goroutine.
type Shedder struct {
	lim        *limiter
	retryAfter time.Duration
	header     string // Retry-After value
	pushback   string // grpc-retry-pushback-ms value
	log        *slog.Logger
	shed       prometheus.Counter
	inflight   prometheus.Gauge
	logged     atomic.Int64 // unix seconds of the last shedding log line
}

// ShedOption configures a Shedder.
type ShedOption func(*shedConfig)

type shedConfig struct {
	name       string
	retryAfter time.Duration
	logger     *slog.Logger
	registerer prometheus.Registerer
}

// DefaultRetryAfter is the Retry-After a Shedder sends: one second, the
// smallest the header can say, as a shed request is typically retried
// elsewhere or soon.
const DefaultRetryAfter = time.Second

// WithShedName names the shedder in its metrics' "server" label (default
// "default"), for processes with several.
func WithShedName(name string) ShedOption { return func(c *shedConfig) { c.name = name } }

// WithRetryAfter sets the delay advertised to refused clients (default
// DefaultRetryAfter; HTTP rounds it up to whole seconds).
func WithRetryAfter(d time.Duration) ShedOption { return func(c *shedConfig) { c.retryAfter = d } }

// WithShedLogger sets the logger (default slog.Default()). Shedding is
// logged at most once a second.
func WithShedLogger(l *slog.Logger) ShedOption { return func(c *shedConfig) { c.logger = l } }

// WithShedRegisterer registers the shedder's metrics on r (default: none).
func WithShedRegisterer(r prometheus.Registerer) ShedOption {
	return func(c *shedConfig) { c.registerer = r }
}

// NewShedder returns a Shedder that lets at most maxInFlight requests be
// handled at once.
func NewShedder(maxInFlight int, opts ...ShedOption) (*Shedder, error) {
	cfg := shedConfig{name: "default", retryAfter: DefaultRetryAfter}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case maxInFlight < 1:
		return nil, fmt.Errorf("overload: shedder: max in flight %d must be at least 1", maxInFlight)
	case cfg.retryAfter <= 0:
		return nil, fmt.Errorf("overload: shedder: retry after %v must be positive", cfg.retryAfter)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	labels := prometheus.Labels{"server": cfg.name}
	shed, err := metrics.Register(cfg.registerer, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "overload",
		Name: "server_shed_total", Help: "Requests a server refused at once because it was handling its limit."}, []string{"server"}))
	if err != nil {
		return nil, fmt.Errorf("overload: shedder: %w", err)
	}
	inflight, err := metrics.Register(cfg.registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "overload",
		Name: "server_in_flight", Help: "Requests a server is handling, under its shedder's limit."}, []string{"server"}))
	if err != nil {
		return nil, fmt.Errorf("overload: shedder: %w", err)
	}
	secs := int64((cfg.retryAfter + time.Second - 1) / time.Second)
	return &Shedder{
		lim:        newLimiter(maxInFlight, 0),
		retryAfter: cfg.retryAfter,
		header:     strconv.FormatInt(secs, 10),
		pushback:   strconv.FormatInt(cfg.retryAfter.Milliseconds(), 10),
		log:        cfg.logger.With("server", cfg.name),
		shed:       shed.With(labels),
		inflight:   inflight.With(labels),
	}, nil
}

// InFlight returns the requests being handled now.
func (s *Shedder) InFlight() int64 { return s.lim.inFlight() }

// enter takes a slot, or counts and reports a refusal.
func (s *Shedder) enter() bool {
	if s.lim.tryAcquire() {
		s.inflight.Inc()
		return true
	}
	s.shed.Inc()
	if now := time.Now().Unix(); s.logged.Load() != now && s.logged.Swap(now) != now {
		s.log.Warn("overload: shedding load", "max_in_flight", s.lim.max)
	}
	return false
}

func (s *Shedder) leave() {
	s.inflight.Dec()
	s.lim.release()
}

// message is the refusal's text.
func (s *Shedder) message() string {
	return fmt.Sprintf("overload: server shedding load: %d requests in flight", s.lim.max)
}

// Middleware refuses requests past the limit with 503 Service Unavailable
// and Retry-After, and passes the others to next.
func (s *Shedder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.enter() {
			h := w.Header()
			h.Set("Retry-After", s.header)
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, s.message())
			return
		}
		defer s.leave()
		next.ServeHTTP(w, r)
	})
}

// pushbackKey is the trailer gRPC clients read for how long to wait
// before retrying (gRFC A6).
const pushbackKey = "grpc-retry-pushback-ms"

// UnaryServerInterceptor refuses calls past the limit with
// codes.ResourceExhausted and a retry pushback.
func (s *Shedder) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !s.enter() {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(pushbackKey, s.pushback))
			return nil, status.Error(codes.ResourceExhausted, s.message())
		}
		defer s.leave()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor refuses streams past the limit with
// codes.ResourceExhausted and a retry pushback; an admitted stream holds
// its slot until it ends.
func (s *Shedder) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !s.enter() {
			ss.SetTrailer(metadata.Pairs(pushbackKey, s.pushback))
			return status.Error(codes.ResourceExhausted, s.message())
		}
		defer s.leave()
		return handler(srv, ss)
	}
}
