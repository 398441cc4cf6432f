package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrClosed is returned by CheckNow after Close.
	ErrClosed = errors.New("probe: prober closed")
	// ErrUnknownAddr is returned by CheckNow for an address that is not
	// being probed.
	ErrUnknownAddr = errors.New("probe: address not probed")
)

// Prober checks a set of addresses periodically, one goroutine per address,
// and keeps their health and smoothed RTT. Create it with New; the methods
// are safe for concurrent use.
type Prober struct {
	checker Checker
	opts    options
	log     *slog.Logger
	m       *probeMetrics
	sem     chan struct{} // bounds concurrent checks

	mu       sync.Mutex
	loops    map[string]*loop
	retiring map[string]chan struct{} // removed loops still running, by addr
	subs     map[uint64]*subscription
	nextSub  uint64
	closed   bool

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// loop is the state of one probed address.
type loop struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}      // closed when the goroutine returned
	now    chan chan<- Status // CheckNow requests
	st     Status             // guarded by Prober.mu
	sample time.Time          // when RTT last took a sample; guarded by Prober.mu
	gone   bool               // removed or closed; guarded by Prober.mu
}

// New returns a Prober that checks addresses with c. It probes nothing until
// SetAddrs; call Close to stop it.
func New(c Checker, opts ...Option) *Prober {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Prober{
		checker:  c,
		opts:     o,
		log:      log,
		m:        newProbeMetrics(o.reg, o.perEndpoint, log),
		sem:      make(chan struct{}, o.concurrency),
		loops:    make(map[string]*loop),
		retiring: make(map[string]chan struct{}),
		subs:     make(map[uint64]*subscription),
	}
}

// SetAddrs makes addrs the set of probed addresses. Loops of addresses that
// stay keep running with their state; removed ones stop; new ones start
// with their first check right away and Unknown health. Duplicates are
// ignored. After Close it does nothing.
func (p *Prober) SetAddrs(addrs []string) {
	want := make(map[string]struct{}, len(addrs))
	for _, a := range addrs {
		want[a] = struct{}{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for addr, l := range p.loops {
		if _, ok := want[addr]; !ok {
			p.retireLocked(l)
			p.retiring[addr] = l.done
		}
	}
	for addr := range want {
		if _, ok := p.loops[addr]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &loop{
			addr:   addr,
			cancel: cancel,
			done:   make(chan struct{}),
			now:    make(chan chan<- Status),
			st:     Status{Addr: addr},
		}
		p.loops[addr] = l
		prev := p.retiring[addr]
		p.wg.Add(1)
		go p.run(ctx, l, prev)
	}
}

// retireLocked stops l and takes it out of the table and the metrics.
func (p *Prober) retireLocked(l *loop) {
	l.cancel()
	l.gone = true
	delete(p.loops, l.addr)
	if l.st.Health == Healthy {
		p.m.healthyDelta(l.addr, -1)
	}
	p.m.forget(l.addr)
}

// Status returns what is known about addr, and false if it is not probed.
func (p *Prober) Status(addr string) (Status, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.loops[addr]
	if !ok {
		return Status{}, false
	}
	return l.st, true
}

// Statuses returns the status of every probed address, sorted by address.
func (p *Prober) Statuses() []Status {
	p.mu.Lock()
	out := make([]Status, 0, len(p.loops))
	for _, l := range p.loops {
		out = append(out, l.st)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Subscribe calls fn after every completed check, with HealthChanged set
// when the check changed the address's health. fn runs on the probing
// goroutine of the address: calls for one address never overlap and come
// in order, calls for different addresses may run concurrently. fn is
// never called with the prober's locks held, so it may call Status,
// SetAddrs or Subscribe; it must not call Close, and a slow fn delays the
// next check of its address. The returned function unsubscribes (it is
// idempotent); fn is not called after it returned, except by a call that
// was already under way.
func (p *Prober) Subscribe(fn func(Event)) (unsubscribe func()) {
	sub := &subscription{fn: fn}
	sub.active.Store(true)
	p.mu.Lock()
	id := p.nextSub
	p.nextSub++
	p.subs[id] = sub
	p.mu.Unlock()
	return func() {
		sub.active.Store(false)
		p.mu.Lock()
		delete(p.subs, id)
		p.mu.Unlock()
	}
}

// subscription is one Subscribe call. active is checked right before each
// call, so that a subscriber removed while another one ran is not called.
type subscription struct {
	fn     func(Event)
	active atomic.Bool
}

// CheckNow has addr's loop check it right away (or as soon as its current
// check finished) and returns the resulting status; subscribers hear of it
// as of any check. It fails with ErrUnknownAddr if addr is not probed,
// ErrClosed after Close, or ctx's error. A failed check is not an error
// here: it is in Status.LastErr.
func (p *Prober) CheckNow(ctx context.Context, addr string) (Status, error) {
	p.mu.Lock()
	closed := p.closed
	l, ok := p.loops[addr]
	p.mu.Unlock()
	switch {
	case closed:
		return Status{}, ErrClosed
	case !ok:
		return Status{}, ErrUnknownAddr
	}
	reply := make(chan Status, 1)
	select {
	case l.now <- reply:
	case <-l.done:
		return Status{}, ErrUnknownAddr
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	select {
	case st := <-reply:
		return st, nil
	case <-l.done:
		return Status{}, ErrUnknownAddr
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Close stops every loop and waits for them to return. Checks under way
// are cancelled. It is idempotent and always returns nil.
func (p *Prober) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		for _, l := range p.loops {
			p.retireLocked(l)
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return nil
}

// run is the goroutine of one address. prev, if not nil, is closed when an
// earlier loop of the same address returned: waiting for it keeps the
// events of one address in order.
func (p *Prober) run(ctx context.Context, l *loop, prev <-chan struct{}) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		if p.retiring[l.addr] == l.done {
			delete(p.retiring, l.addr)
		}
		p.mu.Unlock()
		close(l.done)
	}()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return
		}
	}
	timer := time.NewTimer(0) // the first check runs right away
	defer timer.Stop()
	for {
		var reply chan<- Status
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case reply = <-l.now:
		}
		ev, subs, ok := p.check(ctx, l)
		if !ok {
			return
		}
		for _, sub := range subs {
			if sub.active.Load() {
				sub.fn(ev)
			}
		}
		if reply != nil {
			reply <- ev.Status
		}
		timer.Reset(p.wait())
	}
}

// wait returns the interval with jitter applied.
func (p *Prober) wait() time.Duration {
	f := 1 + p.opts.jitter*(2*rand.Float64()-1)
	return time.Duration(float64(p.opts.interval) * f)
}

// check runs one check of l and records it. It returns false when the loop
// was stopped meanwhile: the result is then dropped.
func (p *Prober) check(ctx context.Context, l *loop) (Event, []*subscription, bool) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return Event{}, nil, false
	}
	cctx, cancel := context.WithTimeout(ctx, p.opts.timeout)
	var res Result
	var err error
	if lc, ok := p.checker.(LoadChecker); ok {
		res, err = lc.CheckLoad(cctx, l.addr)
	} else {
		res.RTT, err = p.checker.Check(cctx, l.addr)
	}
	rtt := res.RTT
	if err == nil && rtt > p.opts.timeout {
		// A checker that ignored its deadline still missed it.
		err = fmt.Errorf("probe: %s: check took %v: %w", l.addr, rtt, context.DeadlineExceeded)
	}
	cancel()
	<-p.sem
	now := time.Now()

	p.mu.Lock()
	if l.gone {
		p.mu.Unlock()
		return Event{}, nil, false
	}
	p.m.observe(l.addr, rtt, err)
	st := &l.st
	old := st.Health
	st.Checks++
	st.LastCheck = now
	st.LoadErr = res.LoadErr
	if !res.Load.IsZero() {
		st.Load = res.Load
	}
	if err == nil {
		st.Successes++
		st.Failures = 0
		st.LastErr = nil
		st.LastRTT = rtt
		if st.RTT == 0 || l.sample.IsZero() {
			st.RTT = rtt
		} else {
			st.RTT = smooth(st.RTT, rtt, now.Sub(l.sample), p.opts.decay)
		}
		l.sample = now
		if st.Health != Healthy && st.Successes >= p.opts.rise {
			st.Health = Healthy
		}
	} else {
		st.Failures++
		st.Successes = 0
		st.LastErr = err
		if st.Health != Unhealthy && st.Failures >= p.opts.fall {
			st.Health = Unhealthy
		}
	}
	changed := st.Health != old
	if changed {
		if st.Health == Healthy {
			p.m.healthyDelta(l.addr, 1)
		} else if old == Healthy {
			p.m.healthyDelta(l.addr, -1)
		}
	}
	ev := Event{Status: *st, HealthChanged: changed}
	subs := make([]*subscription, 0, len(p.subs))
	for _, sub := range p.subs {
		subs = append(subs, sub)
	}
	p.mu.Unlock()

	if changed {
		if err != nil {
			p.log.Warn("probe: health changed", "addr", l.addr, "from", old, "to", ev.Health, "failures", ev.Failures, "err", err)
		} else {
			p.log.Info("probe: health changed", "addr", l.addr, "from", old, "to", ev.Health, "rtt", ev.RTT)
		}
	}
	return ev, subs, true
}

// smooth returns the estimate est updated with a sample taken dt after the
// previous one: the old estimate keeps the weight exp(-dt/decay).
func smooth(est, sample, dt, decay time.Duration) time.Duration {
	w := math.Exp(-float64(max(dt, 0)) / float64(decay))
	return time.Duration(float64(est)*w + float64(sample)*(1-w))
}
