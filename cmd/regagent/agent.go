package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/backoff"
	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/registry"
)

// Retry backoff of the agent's own attempts (connecting to etcd,
// registering after the check turned healthy). Once registered, the
// registry package re-registers by itself after a lease loss.
const (
	retryInitial = 100 * time.Millisecond
	retryMax     = 5 * time.Second
)

// agent keeps one instance registered in etcd while its local health check
// passes. It is driven by one goroutine, run's; the probe's callback and
// the HTTP handlers only read and write the fields under mu.
type agent struct {
	cfg     *config
	log     *slog.Logger
	etcdCfg clientv3.Config
	checker probe.Checker
	reg     *prometheus.Registry
	m       *agentMetrics
	backoff backoff.Exponential

	// changed receives a token when the check's verdict changes.
	changed chan struct{}

	mu           sync.Mutex
	registration *registry.Registration // nil while not registered
	last         probe.Status           // the latest check
	healthy      bool                   // the check's verdict: rise successes seen, not yet fall failures
	draining     bool
	lastErr      error // the latest failure to connect or register
	// etcdAnswered is set once etcd answered the start-up check: an agent
	// shut down before that exits exitEtcd.
	etcdAnswered bool
}

// agentStatus is a consistent snapshot for /healthz and the gauges.
type agentStatus struct {
	registered bool   // the key is written under a live lease
	healthy    bool   // the local check passes
	draining   bool   // shutting down
	reason     string // one line for /healthz
}

// newAgent builds the agent from a validated config. Its errors are
// configuration errors (an unreadable certificate file, say).
func newAgent(cfg *config, log *slog.Logger) (*agent, error) {
	checker, err := cfg.check.checker()
	if err != nil {
		return nil, err
	}
	a := &agent{
		cfg:     cfg,
		log:     log,
		etcdCfg: cfg.etcd.client,
		checker: checker,
		backoff: backoff.Exponential{Initial: retryInitial, Max: retryMax},
		changed: make(chan struct{}, 1),
	}
	a.reg, a.m = newRegistry(a)
	return a, nil
}

// run runs the agent until ctx ends, then drains and deregisters the
// instance. It returns the process exit code.
func (a *agent) run(ctx context.Context) int {
	stopHTTP, err := a.serveHTTP()
	if err != nil {
		a.log.Error("cannot serve /metrics and /healthz", "listen", a.cfg.listen, "err", err)
		return exitFailure
	}
	defer stopHTTP()

	p := probe.New(a.checker,
		probe.WithInterval(a.cfg.check.interval),
		probe.WithTimeout(a.cfg.check.timeout),
		probe.WithRise(a.cfg.check.rise),
		probe.WithFall(a.cfg.check.fall),
		probe.WithLogger(a.log),
		probe.WithRegisterer(a.reg),
	)
	unsubscribe := p.Subscribe(a.onCheck)
	p.SetAddrs([]string{a.cfg.check.addr})
	stopProbe := sync.OnceFunc(func() { unsubscribe(); p.Close() })
	defer stopProbe()

	a.log.Info("regagent started", "version", versionString(),
		"service", a.cfg.instance.Service, "addr", a.cfg.instance.Addr,
		"check", a.cfg.check.kind, "check_target", a.cfg.check.target,
		"rise", a.cfg.check.rise, "fall", a.cfg.check.fall,
		"etcd", a.cfg.etcd.endpoints)

	var cli *clientv3.Client
	defer func() {
		if cli != nil {
			cli.Close()
		}
	}()
	var (
		retry   *time.Timer
		retryC  <-chan time.Time
		attempt int
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if retryC == nil {
			if err := a.reconcile(ctx, &cli); err != nil && ctx.Err() == nil {
				delay := a.backoff.Delay(attempt)
				attempt++
				msg := "not registered; retrying"
				var ee *cliutil.EtcdError
				switch {
				case errors.As(err, &ee):
					msg = "etcd cannot be used; retrying"
				case errors.Is(err, registry.ErrDuplicateInstance):
					// Another instance holds the ID at another address
					// (our own predecessor at this address is taken
					// over by Register).
					msg = "not registered: the ID is registered at another address; retrying until that registration goes"
				}
				a.log.Warn(msg, "err", err, "retry_in", delay.Round(time.Millisecond).String(), "attempt", attempt)
				retry = time.NewTimer(delay)
				retryC = retry.C
			} else if err == nil {
				attempt = 0
			}
		}
		select {
		case <-ctx.Done():
			stopProbe()
			return a.shutdown()
		case <-a.changed:
			// Act on the new verdict now: deregistering needs no wait,
			// and registering should not wait out a backoff that was
			// started for another reason.
			if retry != nil {
				retry.Stop()
			}
			retryC = nil
		case <-retryC:
			retryC = nil
		}
	}
}

// reconcile makes the registration match the check's verdict: it connects
// to etcd if not yet connected, registers while healthy, deregisters while
// not. An error means "try again later".
//
// Connecting is cliutil.CheckEtcd: within --etcd-dial-timeout it reaches
// etcd, authenticates and checks that the instance's key may be written,
// so that a wrong endpoint, CA, certificate, password or role is reported
// (logged, on /healthz, in register_failures_total) at start-up, whatever
// the local check says, and by its cause.
func (a *agent) reconcile(ctx context.Context, cli **clientv3.Client) error {
	if *cli == nil {
		c, err := cliutil.CheckEtcd(ctx, a.etcdCfg, a.etcdAccess())
		if err != nil {
			if ctx.Err() != nil {
				return nil // shutting down
			}
			a.failed(err)
			return err
		}
		a.mu.Lock()
		a.etcdAnswered, a.lastErr = true, nil
		a.mu.Unlock()
		a.log.Info("etcd reached", "endpoints", a.cfg.etcd.endpoints)
		*cli = c
	}
	a.mu.Lock()
	healthy, r := a.healthy, a.registration
	a.mu.Unlock()
	switch {
	case healthy && r == nil:
		// The registry bounds one attempt by the TTL; a shorter bound
		// would give up on a slow but working etcd and revoke what it
		// had just written.
		r, err := registry.Register(ctx, *cli, a.cfg.instance,
			registry.WithTTL(a.cfg.ttl),
			registry.WithPrefix(a.cfg.etcd.prefix),
			registry.WithLogger(a.log),
			registry.WithRegisterer(a.reg),
		)
		if err != nil {
			if ctx.Err() != nil {
				return nil // shutting down
			}
			err = cliutil.DiagnoseEtcdWith(ctx, *cli, err, a.etcdCfg, a.etcdAccess(), a.cfg.ttl)
			a.failed(err)
			var ee *cliutil.EtcdError
			if errors.As(err, &ee) {
				// Check etcd again before the next attempt: it names
				// the cause within the dial timeout.
				(*cli).Close()
				*cli = nil
			}
			return err
		}
		a.mu.Lock()
		a.registration, a.lastErr = r, nil
		a.mu.Unlock()
	case !healthy && r != nil:
		a.mu.Lock()
		a.registration = nil
		a.mu.Unlock()
		a.m.deregistrations.WithLabelValues(reasonUnhealthy).Inc()
		if err := r.Close(context.Background()); err != nil {
			a.log.Warn("deregister: the lease expires by itself within the TTL", "ttl", a.cfg.ttl.String(), "err", err)
		}
		a.log.Info("deregistered: local check unhealthy", "key", r.Key())
	}
	return nil
}

// etcdAccess is what the agent needs of etcd: to write its instance's
// key.
func (a *agent) etcdAccess() cliutil.Access {
	return cliutil.Access{
		Key:         registry.Key(a.cfg.etcd.prefix, a.cfg.instance.Service, cmp.Or(a.cfg.instance.ID, a.cfg.instance.Addr)),
		Write:       true,
		GrantPrefix: strings.TrimSuffix(a.cfg.etcd.prefix, "/") + "/",
		Role:        "smartroute-registrant",
	}
}

// failed records a failed attempt to connect or register.
func (a *agent) failed(err error) {
	a.m.registerFailures.Inc()
	a.mu.Lock()
	a.lastErr = err
	a.mu.Unlock()
}

// shutdown drains and deregisters the instance: it marks it draining, waits
// the drain period so that clients see it and finish their requests, then
// revokes its lease. It returns the exit code.
func (a *agent) shutdown() int {
	a.mu.Lock()
	r := a.registration
	a.draining = true
	answered, lastErr := a.etcdAnswered, a.lastErr
	a.mu.Unlock()
	if r == nil {
		if !answered && lastErr != nil {
			a.log.Error("shutting down; etcd never answered, the instance was never registered", "err", lastErr)
			return exitEtcd
		}
		a.log.Info("shutting down; the instance was not registered")
		return exitOK
	}
	a.log.Info("shutting down: draining", "key", r.Key(), "drain_period", a.cfg.drainPeriod.String())
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.etcd.dialTimeout)
	err := r.Drain(ctx)
	cancel()
	if err != nil {
		// The registry keeps the draining value and writes it if it
		// registers again before the period ends.
		a.log.Warn("could not mark the instance draining", "err", err)
	}
	if a.cfg.drainPeriod > 0 {
		t := time.NewTimer(a.cfg.drainPeriod)
		<-t.C
	}
	a.mu.Lock()
	a.registration = nil
	a.mu.Unlock()
	a.m.deregistrations.WithLabelValues(reasonShutdown).Inc()
	if err := r.Close(context.Background()); err != nil {
		a.log.Warn("deregister: the lease expires by itself within the TTL", "ttl", a.cfg.ttl.String(), "err", err)
	} else {
		a.log.Info("deregistered", "key", r.Key())
	}
	return exitOK
}

// onCheck receives every completed check from the prober. It must not
// block: it records the result and wakes run when the verdict changed.
func (a *agent) onCheck(ev probe.Event) {
	a.mu.Lock()
	a.last = ev.Status
	if ev.HealthChanged {
		a.healthy = ev.Health == probe.Healthy
	}
	a.mu.Unlock()
	if !ev.HealthChanged {
		return
	}
	switch ev.Health {
	case probe.Healthy:
		a.log.Info("local check healthy; registering", "target", a.cfg.check.target, "rtt", ev.LastRTT.String())
	default:
		a.log.Warn("local check "+ev.Health.String()+"; deregistering", "target", a.cfg.check.target, "err", ev.LastErr)
	}
	select {
	case a.changed <- struct{}{}:
	default: // a wake-up is already pending; run reads the latest verdict
	}
}

// status returns a snapshot of the agent's state.
func (a *agent) status() agentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := agentStatus{healthy: a.healthy, draining: a.draining}
	r := a.registration
	switch {
	case r != nil:
		switch st := r.State(); st {
		case registry.Registered:
			s.registered = true
			s.reason = "registered as " + r.Key()
		case registry.Lost:
			s.reason = fmt.Sprintf("registration lost, registering again: %v", r.Err())
		default:
			s.reason = "registration " + st.String()
		}
		if a.draining {
			s.reason = "draining: " + s.reason
		}
	case a.draining:
		s.reason = "shutting down"
	case a.lastErr != nil && !a.etcdAnswered:
		// etcd first: the instance cannot be registered whatever the
		// local check says.
		s.reason = fmt.Sprintf("not registered: %v", a.lastErr)
	case !a.healthy && a.last.Checks == 0:
		s.reason = "not registered: waiting for the first local check"
	case !a.healthy && a.last.Health == probe.Unhealthy:
		s.reason = fmt.Sprintf("not registered: local check failing: %v", a.last.LastErr)
	case !a.healthy:
		s.reason = fmt.Sprintf("not registered: local check at %d/%d successes", a.last.Successes, a.cfg.check.rise)
		if a.last.LastErr != nil {
			s.reason += fmt.Sprintf(" (last error: %v)", a.last.LastErr)
		}
	case a.lastErr != nil:
		s.reason = fmt.Sprintf("not registered: %v", a.lastErr)
	default:
		s.reason = "not registered: registering"
	}
	return s
}
