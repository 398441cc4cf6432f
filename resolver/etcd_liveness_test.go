package resolver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// quietFor is how long a healthy cluster stays silent in the liveness
// tests: with a check every quietCheck, a hundred checks or more, each
// given the default timeout so that a loaded machine is not an outage.
const (
	quietFor     = 20 * time.Second
	quietCheck   = 150 * time.Millisecond
	quietTimeout = 3 * time.Second
)

// relists sums smartroute_resolver_relists_total over its reasons.
func relists(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	n := 0.0
	for _, reason := range []string{"compacted", "watch_ended", "unreachable"} {
		n += metricValue(t, reg, "smartroute_resolver_relists_total", map[string]string{"reason": reason})
	}
	return n
}

// stayQuiet lets d pass with nothing written, or fails when ctx ends
// first. The time is the scenario, not a stand-in for a condition.
func stayQuiet(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
		t.Fatal("test deadline during the quiet period")
	}
}

// A healthy etcd on which nothing is written is not an outage: a resolver
// and a registration on one client, with checks every 150 ms for 20 s,
// deliver no error, re-list nothing, log no warning and write nothing.
// Before, the resolver's progress requests went unanswered (the watch
// started beyond the current revision) and it re-listed every few seconds.
// Then, each fault is still reported promptly.
func TestEtcdResolverQuietClusterIsNotAnOutage(t *testing.T) {
	t.Parallel()
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d members", members), func(t *testing.T) {
			t.Parallel()
			c := etcdtest.Start(t, etcdtest.WithMembers(members))
			m0 := c.Member(0)
			cli := m0.Client(t)
			ctx := timeout(t, quietFor+90*time.Second)
			rlog, reglog := testlog.NewCounted(t), testlog.NewCounted(t)
			metrics := prometheus.NewRegistry()

			r := register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001"},
				registry.WithLogger(reglog.Logger), registry.WithEtcdHealthCheck(quietCheck, quietTimeout))
			res := newEtcd(t, cli, "api", resolver.WithLogger(rlog.Logger), resolver.WithRegisterer(metrics),
				resolver.WithEtcdHealthCheck(quietCheck, quietTimeout))
			w := startWatch(t, ctx, res)
			w.waitAddrs(t, ctx, "127.0.0.1:8001")
			index := c.RaftIndex()

			stayQuiet(t, ctx, quietFor)

			for _, s := range w.history() {
				if s.Err != nil {
					t.Errorf("error State on a quiet, healthy cluster: %v", s.Err)
				}
			}
			if n := len(w.history()); n != 1 {
				t.Errorf("%d States delivered, want the first one only", n)
			}
			if n := relists(t, metrics); n != 0 {
				t.Errorf("%v re-lists on a quiet, healthy cluster", n)
			}
			for _, l := range append(rlog.Warnings(), reglog.Warnings()...) {
				t.Errorf("warning on a quiet, healthy cluster: %s", l)
			}
			if r.State() != registry.Registered || r.Err() != nil {
				t.Errorf("registration %v (%v)", r.State(), r.Err())
			}
			if grown := c.RaftIndex() - index; grown != 0 {
				t.Errorf("%d raft entries written on a quiet cluster", grown)
			}

			// Each fault is reported within a check interval and a
			// timeout, and the set comes back after it.
			verdict := func(name string, fault func() (restore func())) {
				t.Helper()
				before := len(w.history())
				start := time.Now()
				restore := fault()
				s := w.waitErr(t, ctx)
				took := time.Since(start)
				t.Logf("%s: reported after %v: %v", name, took.Round(time.Millisecond), s.Err)
				if len(s.Endpoints) != 1 {
					t.Errorf("%s: %s, want the error with the last set", name, describe(s))
				}
				if limit := quietCheck + quietTimeout + 5*time.Second; took > limit {
					t.Errorf("%s: reported after %v, want within about %v", name, took, quietCheck+quietTimeout)
				}
				restore()
				w.waitAddrs(t, ctx, "127.0.0.1:8001")
				if len(w.history()) == before {
					t.Fatalf("%s: nothing delivered", name)
				}
			}
			verdict("member cut off", func() func() { return m0.CutOff(t) })
			if members == 3 {
				verdict("member without a leader", func() func() {
					c.Member(1).Kill(t)
					c.Member(2).Kill(t)
					return func() {
						c.Member(1).Restart(t)
						c.Member(2).Restart(t)
						c.Leader(t)
					}
				})
			}
			verdict("member gone", func() func() {
				m0.Kill(t)
				return func() {
					m0.Restart(t)
					c.Leader(t)
				}
			})
		})
	}
}
