package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/smartroute/smartroute/probe"
)

// maxParallel bounds how many endpoints are probed at once.
const maxParallel = 64

// measurement is what the checks of one endpoint found.
type measurement struct {
	addr string
	// rtts are the round-trip times of the successful checks, in order.
	rtts []time.Duration
	// checks and failures count the checks made and those that failed.
	checks, failures int
	// lastErr is the error of the last failed check.
	lastErr error
	// tls is the last handshake's outcome, when the TLS column is on.
	tls *tlsOutcome
}

// tlsOutcome is one TLS handshake: its result or its error.
type tlsOutcome struct {
	res *probe.HandshakeResult
	err error
}

// healthy reports the verdict: more than half of the checks succeeded.
func (m *measurement) healthy() bool { return m.checks > 0 && 2*(m.checks-m.failures) > m.checks }

// loss is the share of failed checks, 0..1.
func (m *measurement) loss() float64 {
	if m.checks == 0 {
		return 1
	}
	return float64(m.failures) / float64(m.checks)
}

// stats returns the minimum, mean and 99th percentile (nearest rank) of
// the successful checks' RTTs; ok is false when none succeeded.
func (m *measurement) stats() (minRTT, avg, p99 time.Duration, ok bool) {
	if len(m.rtts) == 0 {
		return 0, 0, 0, false
	}
	s := slices.Clone(m.rtts)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	// Nearest rank: the smallest value with at least 99% of the samples
	// at or below it.
	rank := (99*len(s) + 99) / 100
	return s[0], sum / time.Duration(len(s)), s[rank-1], true
}

// measure runs count checks against every address, the checks of one
// address interval apart, up to maxParallel addresses at once. It returns
// when every address is done or ctx ends (the checks under way are then
// cancelled and counted as failed).
func measure(ctx context.Context, addrs []string, s checkSpec, count int) map[string]*measurement {
	out := make(map[string]*measurement, len(addrs))
	for _, a := range addrs {
		out[a] = &measurement{addr: a}
	}
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for _, a := range addrs {
		m := out[a]
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			m.run(ctx, s, count)
		})
	}
	wg.Wait()
	return out
}

// run checks m.addr count times (one goroutine owns m meanwhile).
func (m *measurement) run(ctx context.Context, s checkSpec, count int) {
	for i := range count {
		if i > 0 && s.interval > 0 {
			t := time.NewTimer(s.interval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		rtt, hs, err := s.runOne(ctx, m.addr)
		m.checks++
		if err != nil {
			m.failures++
			m.lastErr = err
		} else {
			m.rtts = append(m.rtts, rtt)
		}
		if s.kind == "tls" {
			m.tls = &tlsOutcome{res: hs, err: err}
		}
	}
	if s.handshake != nil && s.kind != "tls" && ctx.Err() == nil {
		hctx, cancel := context.WithTimeout(ctx, s.timeout)
		res, err := s.handshake.Handshake(hctx, m.addr)
		cancel()
		if err != nil {
			m.tls = &tlsOutcome{err: err}
		} else {
			m.tls = &tlsOutcome{res: &res}
		}
	}
}
