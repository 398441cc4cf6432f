package resolver_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// Everything works through etcd's gRPC proxy, which large fleets put
// between their clients and etcd: registration, resolution, a quiet
// cluster that is not an outage (the proxy never answers progress
// requests, so a check built on them reported one at every check), a
// second client's resolver sharing the proxy's watch, and the loss of the
// cluster's leader behind the proxy, reported by the resolver and the
// registration and recovered from.
func TestEtcdThroughGRPCProxy(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	p := c.StartGRPCProxy(t)
	ctx := timeout(t, quietFor+90*time.Second)
	cli := p.Client(t)
	rlog, reglog := testlog.NewCounted(t), testlog.NewCounted(t)
	metrics := prometheus.NewRegistry()

	r := register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001"},
		registry.WithTTL(5*time.Second), registry.WithLogger(reglog.Logger), registry.WithEtcdHealthCheck(quietCheck, quietTimeout))
	w := startWatch(t, ctx, newEtcd(t, cli, "api", resolver.WithLogger(rlog.Logger), resolver.WithRegisterer(metrics),
		resolver.WithEtcdHealthCheck(quietCheck, quietTimeout)))
	w.waitAddrs(t, ctx, "127.0.0.1:8001")
	// Another client of the proxy: its watch shares the proxy's watch on
	// etcd.
	other := startWatch(t, ctx, newEtcd(t, p.Client(t), "api", resolver.WithEtcdHealthCheck(quietCheck, quietTimeout)))
	other.waitAddrs(t, ctx, "127.0.0.1:8001")
	register(t, ctx, p.Client(t), registry.Instance{Service: "api", Addr: "127.0.0.1:8002"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")
	other.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")
	states := len(w.history())

	stayQuiet(t, ctx, quietFor)
	for _, s := range w.history() {
		if s.Err != nil {
			t.Errorf("error State through the proxy on a quiet, healthy cluster: %v", s.Err)
		}
	}
	if n := len(w.history()); n != states {
		t.Errorf("%d States delivered while quiet", n-states)
	}
	if n := relists(t, metrics); n != 0 {
		t.Errorf("%v re-lists through the proxy on a quiet, healthy cluster", n)
	}
	for _, l := range append(rlog.Warnings(), reglog.Warnings()...) {
		t.Errorf("warning through the proxy on a quiet, healthy cluster: %s", l)
	}

	// The cluster loses its leader behind the proxy. The proxy does not
	// pass clientv3.WithRequireLeader on, so the watches stay open; the
	// checks see a member without a leader.
	start := time.Now()
	c.Member(1).Kill(t)
	c.Member(2).Kill(t)
	s := w.waitErr(t, ctx)
	t.Logf("leader lost behind the proxy: reported after %v: %v", time.Since(start).Round(time.Millisecond), s.Err)
	if len(s.Endpoints) != 2 {
		t.Errorf("after the leader was lost: %s, want the error with the last set", describe(s))
	}
	waitState(t, ctx, r, registry.Lost)
	t.Logf("registration lost after %v", time.Since(start).Round(time.Millisecond))
	c.Member(1).Restart(t)
	c.Member(2).Restart(t)
	c.Leader(t)
	waitState(t, ctx, r, registry.Registered)
	register(t, ctx, p.Client(t), registry.Instance{Service: "api", Addr: "127.0.0.1:8003"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")
	other.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")
	t.Logf("recovered %v after the leader was lost", time.Since(start).Round(time.Millisecond))
}
