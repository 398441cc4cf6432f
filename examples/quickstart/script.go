package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/mtls"
)

// script plays the demo's events at fixed fractions of the duration and
// narrates each in one line. What it measures goes into the report.
type script struct {
	scr          *screen
	fleet        *fleet
	client       *client.Client
	load         *load
	pki          *pki
	stores       []*mtls.Store // every Store that must see a rotation
	clientTLS    *tls.Config
	start        time.Time
	duration     time.Duration
	serverSerial string // the serial the backends present

	wg sync.WaitGroup // followKilled

	mu       sync.Mutex
	errs     []error
	findings []string
	// The killed backend's request attempts as the client counted them
	// when failover was observed, and the latest count seen.
	killedAtFailover, killedLast uint64
	killedName                   string
	// Answers of the draining backend: when the client saw it draining,
	// once the requests then in flight had finished, and at deregistration.
	drainSeen, drainSettled uint64
}

// Fractions of the duration at which the events happen.
const (
	atKill       = 0.20
	atJoin       = 0.40
	atSurge      = 0.48
	atRotate     = 0.60
	atDrain      = 0.75
	atDeregister = 0.90
)

// play runs the script until its last event or until ctx ends. A step
// starts at its moment or, when the one before overran, right after it;
// when ctx's deadline cuts the script short, that is a failed step.
func (s *script) play(ctx context.Context) {
	defer s.wg.Wait()
	// What a step left running (followKilled) ends with the script.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var joined *backend
	steps := []struct {
		name string
		at   float64
		do   func(context.Context) error
	}{
		{"kill", atKill, s.kill},
		{"join", atJoin, func(ctx context.Context) (err error) { joined, err = s.join(ctx); return err }},
		{"surge", atSurge, s.surge},
		{"rotate", atRotate, s.rotate},
		{"drain", atDrain, func(ctx context.Context) error { return s.drain(ctx, joined) }},
		{"deregister", atDeregister, func(ctx context.Context) error { return s.deregister(joined) }},
	}
	cut := func(step string) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("%s: the script ran out of time (twice -duration) before this step finished", step))
			s.mu.Unlock()
		}
	}
	for _, st := range steps {
		at := s.start.Add(time.Duration(st.at * float64(s.duration)))
		select {
		case <-ctx.Done():
			cut(st.name)
			return
		case <-time.After(time.Until(at)):
		}
		if err := st.do(ctx); err != nil {
			if ctx.Err() != nil {
				cut(st.name)
				return
			}
			s.scr.say("error: %v", err)
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
		}
	}
}

// kill crashes the fastest backend and waits until the client has taken it
// out of rotation.
func (s *script) kill(ctx context.Context) error {
	b := s.fastest()
	if b == nil {
		return errors.New("kill: no backend up")
	}
	t0 := time.Now()
	if err := b.kill(); err != nil {
		return fmt.Errorf("kill %s: %w", b.name, err)
	}
	s.scr.say("kill %s (%s, the fastest): its server crashes, its lease is left to expire", b.name, fmtDuration(b.latency))
	// The client stops sending to b at the first failed attempt (a failure
	// counts as a 1s latency, and the request is retried elsewhere); the
	// probe then takes it out of rotation.
	before, _ := s.info(b)
	var e client.EndpointInfo
	lastAttempt := time.Duration(-1)
	err := waitFor(ctx, 3*time.Second, func() bool {
		var ok bool
		e, ok = s.info(b)
		if ok && e.Requests != before.Requests {
			before.Requests, lastAttempt = e.Requests, time.Since(t0)
		}
		return !ok || !e.Eligible
	})
	if err != nil {
		return fmt.Errorf("failover: %s still in rotation: %w", b.name, err)
	}
	took := time.Since(t0)
	s.mu.Lock()
	s.killedName, s.killedAtFailover, s.killedLast = b.name, e.Requests, e.Requests
	s.mu.Unlock()
	failed, _ := s.load.failures()
	if lastAttempt >= 0 {
		s.scr.say("failover: the client's last attempt on %s was %v after the crash (retried elsewhere; its estimate is now %s)",
			b.name, lastAttempt.Round(time.Millisecond), fmtDuration(e.RTT))
	}
	s.scr.say("failover: %s out of rotation %v after the crash (%s); failed requests so far: %d",
		b.name, took.Round(time.Millisecond), whyBrief(e), failed)
	s.wg.Go(func() { s.followKilled(ctx, b, t0) })
	return nil
}

// followKilled keeps count of the client's attempts to the killed backend
// and narrates when its lease expires and the client drops it.
func (s *script) followKilled(ctx context.Context, b *backend, t0 time.Time) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		e, ok := s.info(b)
		if !ok {
			s.scr.say("%s's lease expired: its key left etcd and the client's table %v after the crash",
				b.name, time.Since(t0).Round(100*time.Millisecond))
			return
		}
		s.mu.Lock()
		s.killedLast = e.Requests
		s.mu.Unlock()
	}
}

// join starts a new, faster backend and waits for its first answer.
func (s *script) join(ctx context.Context) (*backend, error) {
	name := fmt.Sprintf("b%d", len(s.fleet.list())+1)
	b, err := s.fleet.start(ctx, name, 2*time.Millisecond)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	s.scr.say("%s (%s) starts and registers under /services/%s/%s", b.name, fmtDuration(b.latency), serviceName, b.name)
	if err := waitFor(ctx, 5*time.Second, func() bool { return s.load.counts()[b.name] > 0 }); err != nil {
		return b, fmt.Errorf("%s got no traffic: %w", b.name, err)
	}
	took := time.Since(t0).Round(time.Millisecond)
	s.scr.say("%s answered its first request %v after registering (etcd watch -> client table)", b.name, took)
	s.found("new backend: %s answered its first request %v after registering", b.name, took)
	return b, nil
}

// surgeWorkers is how many requests another service keeps in flight on
// the fastest backend during the surge: three times its capacity.
const surgeWorkers = 3 * backendCapacity

// surge has another service flood the backend the client uses most past
// its capacity for a while, and shows the client moving its traffic off it
// while the backend reports the queue, and back when the surge ends.
func (s *script) surge(ctx context.Context) error {
	span := max(s.duration/20, 500*time.Millisecond)
	b, before := s.busiest(ctx, span/2)
	if b == nil {
		return errors.New("surge: no backend answered")
	}
	s.scr.say("surge: another service sends %s (%s, works on %d at once), the backend the client uses most, %d requests at a time for %v; the client had %.0f%% of its requests on it",
		b.name, fmtDuration(b.latency), backendCapacity, surgeWorkers, span.Round(100*time.Millisecond), 100*before)
	e0, _ := s.info(b)
	fctx, stop := context.WithCancel(ctx)
	flood := s.flood(fctx, b)
	// The span counts from when the queue has formed and the client has
	// heard of it: on a busy machine the flood's 24 mTLS handshakes alone
	// can take longer than a short span.
	queued := waitFor(ctx, 5*time.Second, func() bool {
		e, _ := s.info(b)
		return e.ReportedInFlight >= backendCapacity
	})
	t1 := time.Now()
	var during float64
	var e client.EndpointInfo
	if queued == nil {
		// Let the client's picks follow the reports before counting.
		select {
		case <-ctx.Done():
		case <-time.After(span / 4):
		}
		during = s.shareOver(ctx, b, span/2)
		e, _ = s.info(b)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(t1.Add(span))):
		}
	}
	stop()
	sent := flood()
	if queued != nil {
		return fmt.Errorf("surge: %s reported no queue to the client (%d surge requests served): %w", b.name, sent, queued)
	}
	s.scr.say("surge: %s reported %.0f requests in flight (capacity %.0f); the client's share of it fell to %.0f%% (%d surge requests served)",
		b.name, e.ReportedInFlight, e.ReportedCapacity, 100*during, sent)
	// Back: the client sends it half its old share again, or, when a
	// faster backend has taken the traffic meanwhile (the new one, on a
	// machine slow to adopt it before the surge), the client expects of
	// it what it did before the surge.
	t0 := time.Now()
	var shareBack bool
	if err := waitFor(ctx, 10*time.Second, func() bool {
		if shareBack = s.shareOver(ctx, b, 250*time.Millisecond) >= before/2; shareBack {
			return true
		}
		e, ok := s.info(b)
		return ok && e.Expected <= e0.Expected*3/2
	}); err != nil {
		return fmt.Errorf("surge: traffic did not come back to %s: %w", b.name, err)
	}
	took := time.Since(t0).Round(10 * time.Millisecond)
	if shareBack {
		s.scr.say("surge over: %s has its traffic back within %v", b.name, took)
		s.found("surge: %s flooded past its capacity: the client's share of it went %.0f%% -> %.0f%% -> back within %v",
			b.name, 100*before, 100*during, took)
		return nil
	}
	s.scr.say("surge over: within %v the client expects %s to answer in %s again, as before the surge; a faster backend keeps the traffic",
		took, b.name, fmtDuration(e0.Expected))
	s.found("surge: %s flooded past its capacity: the client's share of it went %.0f%% -> %.0f%%; back in rotation within %v, a faster backend keeping the traffic",
		b.name, 100*before, 100*during, took)
	return nil
}

// flood keeps surgeWorkers requests in flight on b, straight to its
// address with the client's certificate, until ctx ends; the returned
// function waits for them and says how many were answered.
func (s *script) flood(ctx context.Context, b *backend) func() int64 {
	tr := &http.Transport{
		TLSClientConfig:     s.clientTLS,
		MaxIdleConnsPerHost: surgeWorkers,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, b.Addr())
		},
	}
	var served atomic.Int64
	var wg sync.WaitGroup
	for range surgeWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+serviceName+"/batch", nil)
				if err != nil {
					return
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				served.Add(1)
			}
		})
	}
	return func() int64 {
		wg.Wait()
		tr.CloseIdleConnections()
		return served.Load()
	}
}

// busiest returns the backend that gave the most answers over the next d,
// and its share.
func (s *script) busiest(ctx context.Context, d time.Duration) (*backend, float64) {
	c0 := s.load.counts()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	c1 := s.load.counts()
	var best *backend
	var most, all uint64
	for _, b := range s.fleet.list() {
		n := c1[b.name] - c0[b.name]
		all += n
		if b.State() == "up" && (best == nil || n > most) {
			best, most = b, n
		}
	}
	if best == nil || all == 0 {
		return best, 0
	}
	return best, float64(most) / float64(all)
}

// shareOver returns the share of the client's answers that b gave over the
// next d.
func (s *script) shareOver(ctx context.Context, b *backend, d time.Duration) float64 {
	total := func(m map[string]uint64) (n uint64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	c0 := s.load.counts()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	c1 := s.load.counts()
	if all := total(c1) - total(c0); all > 0 {
		return float64(c1[b.name]-c0[b.name]) / float64(all)
	}
	return 0
}

// rotate publishes new leaves for both identities and shows that new
// handshakes use them.
func (s *script) rotate(ctx context.Context) error {
	t0 := time.Now()
	srv, cli, err := s.pki.publishLeaves(ctx)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	rev := max(srv.revision, cli.revision)
	for _, st := range s.stores {
		if err := st.WaitRevision(ctx, rev); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
	}
	took := time.Since(t0).Round(time.Millisecond)
	want := shortSerial(srv.leaf.Cert.SerialNumber.Text(16))
	b := s.fastest()
	if b == nil {
		return errors.New("rotate: no backend up")
	}
	got, err := servedSerial(ctx, b.Addr(), s.clientTLS)
	if err != nil {
		return fmt.Errorf("rotate: handshake with %s: %w", b.name, err)
	}
	if got != want {
		return fmt.Errorf("rotate: %s presents serial %s, want the new %s", b.name, got, want)
	}
	failed, _ := s.load.failures()
	s.scr.say("certificates rotated: new leaves for %q and %q published to /certs and loaded by servers and client in %v, no restart",
		serverIdentity, clientIdentity, took)
	s.scr.say("new handshakes present serial %s (was %s), open connections keep theirs; failed requests so far: %d",
		got, s.serverSerial, failed)
	s.found("rotation: new certificates loaded in %v; new handshakes present serial %s (was %s)", took, got, s.serverSerial)
	s.serverSerial = got
	return nil
}

// drain marks b draining and waits until the client has seen it.
func (s *script) drain(ctx context.Context, b *backend) error {
	if b == nil {
		b = s.fastest()
	}
	if b == nil {
		return errors.New("drain: no backend up")
	}
	t0 := time.Now()
	if err := b.drain(ctx); err != nil {
		return fmt.Errorf("drain %s: %w", b.name, err)
	}
	s.scr.say("%s drains (as before a deploy): marked draining in etcd", b.name)
	if err := waitFor(ctx, 3*time.Second, func() bool { e, _ := s.info(b); return e.Draining }); err != nil {
		return fmt.Errorf("drain: the client did not see %s draining: %w", b.name, err)
	}
	took := time.Since(t0).Round(time.Millisecond)
	seen := s.load.counts()[b.name]
	s.scr.say("the client sends %s no new requests %v later; the ones in flight finish", b.name, took)
	// Requests sent before the client saw the change finish within the
	// backend's latency; give them ample time before counting.
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(drainSettle):
	}
	s.mu.Lock()
	s.drainSeen, s.drainSettled = seen, s.load.counts()[b.name]
	s.mu.Unlock()
	return nil
}

// drainSettle is how long after the client saw a backend draining its
// last requests are given to finish before the new ones are counted.
const drainSettle = 300 * time.Millisecond

// deregister ends a drained backend: its lease is revoked and its server
// stops.
func (s *script) deregister(b *backend) error {
	if b == nil || b.State() != "draining" {
		return nil
	}
	answered := s.load.counts()[b.name]
	if err := b.deregister(); err != nil {
		return fmt.Errorf("deregister %s: %w", b.name, err)
	}
	failed, _ := s.load.failures()
	s.scr.say("%s deregistered (lease revoked, key deleted at once) and stopped; failed requests so far: %d", b.name, failed)
	s.mu.Lock()
	seen, settled := s.drainSeen, s.drainSettled
	s.mu.Unlock()
	s.found("drain: %s finished %d requests in flight when the client saw it draining, then got %d new ones",
		b.name, settled-seen, answered-settled)
	return nil
}

// report returns what the script measured, one line each.
func (s *script) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	if s.killedName != "" {
		lines = append(lines, fmt.Sprintf("failover: the client sent %d requests to %s after taking it out of rotation",
			s.killedLast-s.killedAtFailover, s.killedName))
	}
	lines = append(lines, s.findings...)
	for _, err := range s.errs {
		lines = append(lines, "script error: "+err.Error())
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// failedSteps returns the errors of the script's steps.
func (s *script) failedSteps() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *script) found(format string, args ...any) {
	s.mu.Lock()
	s.findings = append(s.findings, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// fastest returns the backend with the lowest latency among those up.
func (s *script) fastest() *backend {
	var best *backend
	for _, b := range s.fleet.list() {
		if b.State() == "up" && (best == nil || b.latency < best.latency) {
			best = b
		}
	}
	return best
}

// info returns the client's table entry for b.
func (s *script) info(b *backend) (client.EndpointInfo, bool) {
	for _, e := range s.client.Endpoints() {
		if e.Addr == b.Addr() {
			return e, true
		}
	}
	return client.EndpointInfo{}, false
}

// waitFor polls cond every 5 ms until it holds, d passes or ctx ends.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// whyBrief says in a few words why an endpoint is out of rotation: the
// first and the last part of its reason, "unhealthy: connect: connection
// refused".
func whyBrief(e client.EndpointInfo) string {
	if e.Ejected {
		return "ejected by outlier detection"
	}
	head, _, _ := strings.Cut(e.Why, ":")
	parts := strings.Split(e.Why, ": ")
	if len(parts) < 3 {
		return e.Why
	}
	return fmt.Sprintf("%s: %s", head, strings.Join(parts[len(parts)-2:], ": "))
}
