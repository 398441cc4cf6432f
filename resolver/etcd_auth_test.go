package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// authWriteBudget is the most raft entries two registrations and a
// resolver on one client may cause in authWindow after their token
// expired and both registrations were hit. Recovering costs a handful
// (a re-written key; a lease grant, write and revoke; an authentication
// per new stream and per refreshed token, the token being refreshed at
// every check since it expires between two); the loops this guards
// against wrote thousands.
const (
	authWriteBudget = 100
	authWindow      = 10 * time.Second
)

// With auth on and a 1 s token TTL, once the client's token has expired
// (lease keepalives do not use it), deleting one registration's key and
// revoking the other's lease is recovered from, a new resolver works, and
// all of it writes little. Before, the key watch created again on the
// stream whose token had expired was cancelled at creation, and the
// registration looped on a check-and-write transaction and a new watch
// with no backoff: 5,198 raft entries in 8 s.
func TestEtcdAuthTokenExpiryCostsFewWrites(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: "root-pw", TokenTTL: time.Second}))
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 90*time.Second)
	log := testlog.NewCounted(t)

	a := register(t, ctx, cli, registry.Instance{Service: "api", ID: "a", Addr: "127.0.0.1:8001"}, registry.WithLogger(log.Logger))
	b := register(t, ctx, cli, registry.Instance{Service: "api", ID: "b", Addr: "127.0.0.1:8002"}, registry.WithLogger(log.Logger))
	metrics := prometheus.NewRegistry()
	w := startWatch(t, ctx, newEtcd(t, cli, "api", resolver.WithRegisterer(metrics), resolver.WithLogger(log.Logger)))
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")

	// The scenario: the tokens the watch streams were opened with expire
	// (etcd sweeps expired simple tokens every second).
	stayQuiet(t, ctx, 3*time.Second)
	if ws := log.Warnings(); len(ws) > 0 {
		t.Fatalf("warnings before any fault: %q", ws)
	}

	index := c.RaftIndex()
	start := time.Now()
	if _, err := admin.Delete(ctx, a.Key()); err != nil {
		t.Fatal(err)
	}
	oldB := b.Lease()
	if _, err := admin.Revoke(ctx, oldB); err != nil {
		t.Fatal(err)
	}

	// a writes its key again under its lease; b registers again under a
	// new lease; the resolver follows.
	waitKey := func(r *registry.Registration, ok func(lease clientv3.LeaseID) bool) {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			resp, err := admin.Get(ctx, r.Key())
			if err == nil && len(resp.Kvs) == 1 && ok(clientv3.LeaseID(resp.Kvs[0].Lease)) {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatalf("key %s not back (last: %v %v)", r.Key(), resp, err)
			}
		}
	}
	waitKey(a, func(l clientv3.LeaseID) bool { return l == a.Lease() })
	waitKey(b, func(l clientv3.LeaseID) bool { return l != oldB && l == b.Lease() })
	waitState(t, ctx, b, registry.Registered)
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")
	t.Logf("recovered %v after the faults", time.Since(start).Round(time.Millisecond))

	// A resolver started now, on the same client, works too.
	w2 := startWatch(t, ctx, newEtcd(t, cli, "api"))
	w2.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")

	stayQuiet(t, ctx, authWindow-time.Since(start))
	grown := c.RaftIndex() - index
	t.Logf("raft index grew by %d in %v (two registrations, two resolvers, token TTL 1 s)", grown, authWindow)
	if grown >= authWriteBudget {
		t.Errorf("raft index grew by %d in %v, want under %d", grown, authWindow, authWriteBudget)
	}
	if a.State() != registry.Registered || b.State() != registry.Registered {
		t.Errorf("states %v and %v, want registered", a.State(), b.State())
	}
	// Still following changes.
	if err := a.Update(ctx, func(i *registry.Instance) { i.Weight = 3 }); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, ctx, "a's new weight", func(s resolver.State) bool {
		return s.Err == nil && len(s.Endpoints) == 2 && s.Endpoints[0].Weight == 3
	})
	w2.waitFor(t, ctx, "a's new weight in the new resolver", func(s resolver.State) bool {
		return s.Err == nil && len(s.Endpoints) == 2 && s.Endpoints[0].Weight == 3
	})
}

func waitState(t *testing.T, ctx context.Context, r *registry.Registration, want registry.State) {
	t.Helper()
	for s := r.State(); s != want; s = r.State() {
		if !r.WaitForStateChange(ctx, s) {
			t.Fatalf("state stayed %v, want %v (last error: %v)", s, want, r.Err())
		}
	}
}
