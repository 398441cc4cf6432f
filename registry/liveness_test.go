package registry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
)

// A registration whose member is cut off, loses its leader or is gone
// notices on two levels: its key watch's check fails within a check
// interval and a timeout (a warning), and the registration turns Lost once
// no keepalive was answered for the TTL, since the lease may then have
// expired. When the member is back it registers again by itself. (The
// quiet, healthy case is in resolver.TestEtcdResolverQuietClusterIsNotAnOutage,
// with a resolver on the same client.)
func TestFaultRegistrationVerdicts(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	m0 := c.Member(0)
	ctx := timeout(t, 120*time.Second)
	const (
		ttl      = 4 * time.Second
		interval = 150 * time.Millisecond
		check    = time.Second
	)
	log := testlog.NewCounted(t)
	r := register(t, ctx, m0.Client(t), api, registry.WithTTL(ttl),
		registry.WithEtcdHealthCheck(interval, check), registry.WithLogger(log.Logger))

	verdict := func(name string, fault func() (restore func())) {
		t.Helper()
		warned := len(log.Warnings())
		start := time.Now()
		restore := fault()
		tick := time.NewTicker(5 * time.Millisecond)
		for len(log.Warnings()) == warned {
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("%s: nothing noticed", name)
			}
		}
		tick.Stop()
		noticed := time.Since(start)
		waitState(t, ctx, r, registry.Lost)
		lost := time.Since(start)
		ws := log.Warnings()[warned:]
		t.Logf("%s: noticed after %v, lost after %v (TTL %v): %q", name, noticed.Round(time.Millisecond), lost.Round(time.Millisecond), ttl, ws)
		if len(ws) == 0 || strings.Contains(ws[0], "registration lost") {
			t.Errorf("%s: the key's watch did not notice before the lease was lost", name)
		}
		if lost > ttl+5*time.Second {
			t.Errorf("%s: lost after %v, want within about the TTL %v", name, lost, ttl)
		}
		restore()
		waitState(t, ctx, r, registry.Registered)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, lease, ok := get(t, rctx, c.Leader(t).Client(t), r.Key()); !ok || lease != r.Lease() {
			t.Fatalf("%s: after recovery the key is not under the registration's lease", name)
		}
	}
	verdict("member cut off", func() func() { return m0.CutOff(t) })
	verdict("member without a leader", func() func() {
		c.Member(1).Kill(t)
		c.Member(2).Kill(t)
		return func() {
			c.Member(1).Restart(t)
			c.Member(2).Restart(t)
			c.Leader(t)
		}
	})
	verdict("member gone", func() func() {
		m0.Kill(t)
		return func() {
			m0.Restart(t)
			c.Leader(t)
		}
	})
}
