package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// pickerSettleTimeout bounds the wait for the client's table to take in
// the measurements (it takes microseconds; the bound is for safety).
const pickerSettleTimeout = 2 * time.Second

// errNoReplay is the replayed error of an endpoint that was not measured.
var errNoReplay = errors.New("not probed")

// newPicker returns a smartroute client over eps whose table holds what
// lbprobe measured, so that client.Pick answers as a client that had
// probed the same endpoints would: each endpoint's health is lbprobe's
// verdict and its probe RTT lbprobe's mean RTT. The client's own prober
// replays these figures once instead of checking again (rise and fall 1),
// and it never sends a request.
//
// The caller closes the client.
func newPicker(ctx context.Context, service string, eps []resolver.Endpoint, ms map[string]*measurement, policy client.Policy, breaker ...client.Option) (*client.Client, error) {
	st, err := resolver.NewStaticEndpoints(eps...)
	if err != nil {
		return nil, err
	}
	replay := probe.CheckerFunc(func(_ context.Context, addr string) (time.Duration, error) {
		m, ok := ms[addr]
		if !ok {
			return 0, errNoReplay
		}
		if !m.healthy() {
			if m.lastErr != nil {
				return 0, stripPkg(m.lastErr)
			}
			return 0, errNoReplay
		}
		_, avg, _, _ := m.stats()
		return avg, nil
	})
	c, err := client.NewFromResolver(service, st, append([]client.Option{
		client.WithPolicy(policy),
		client.WithLogger(discard),
		client.WithProbe(replay,
			probe.WithRise(1), probe.WithFall(1),
			// One replayed check is all there is to say.
			probe.WithInterval(time.Hour), probe.WithJitter(0)),
	}, breaker...)...)
	if err != nil {
		return nil, err
	}
	if err := settle(ctx, c, len(eps)); err != nil {
		c.Close()
		return nil, err
	}
	if err := judgeBreakers(ctx, c, ms); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// settle waits until the client's table has a health verdict for each of
// its n endpoints. The replayed checks run on the prober's goroutines and
// land in the table asynchronously; the client offers no notification, so
// this polls briefly.
func settle(ctx context.Context, c *client.Client, n int) error {
	ctx, cancel := context.WithTimeout(ctx, pickerSettleTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		return fmt.Errorf("client table: %w", err)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		infos := c.Endpoints()
		decided := 0
		for _, e := range infos {
			if e.Health != probe.Unknown {
				decided++
			}
		}
		if len(infos) >= n && decided == len(infos) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("client table: %d of %d endpoints settled: %w", decided, n, ctx.Err())
		}
	}
}
