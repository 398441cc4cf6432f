package registry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
)

// readInstance returns the value at key and its lease; the test fails if
// the key is missing.
func readInstance(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) (registry.Instance, clientv3.LeaseID) {
	t.Helper()
	val, lease, ok := get(t, ctx, cli, key)
	if !ok {
		t.Fatalf("key %s missing", key)
	}
	inst, err := registry.Decode(registry.DefaultPrefix, key, val)
	if err != nil {
		t.Fatal(err)
	}
	return inst, lease
}

// hookGate stops a registration at one hook point until released, and
// reports the other hook points it passes.
type hookGate struct {
	stopAt  registry.HookPoint
	reached chan struct{} // closed when stopAt is reached
	release chan struct{} // closed by the test
	waits   chan struct{} // one token per Update about to wait for the lock
	once    sync.Once
}

func newHookGate(stopAt registry.HookPoint) *hookGate {
	return &hookGate{stopAt: stopAt, reached: make(chan struct{}), release: make(chan struct{}), waits: make(chan struct{}, 16)}
}

func (g *hookGate) hook(p registry.HookPoint) {
	switch p {
	case registry.HookUpdateWaits:
		g.waits <- struct{}{}
	case g.stopAt:
		stopped := false
		g.once.Do(func() {
			close(g.reached)
			stopped = true
		})
		if stopped {
			<-g.release
		}
	}
}

func (g *hookGate) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-g.reached:
	case <-ctx.Done():
		t.Fatal("the registration never reached the hook point")
	}
}

// An Update that arrives while a re-registration has written the key and
// not yet recorded its new lease waits for it, then writes over the new
// lease. Before, it saw the registration Lost, returned nil and was never
// written: the re-registration had written the old value.
func TestUpdateDuringReregistrationIsWrittenOverTheNewLease(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	gate := newHookGate(registry.HookRewritten)
	r := register(t, ctx, cli, api, registry.WithHook(gate.hook))
	drain(gate.waits)
	old := r.Lease()

	if _, err := admin.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	gate.wait(t, ctx) // the key is written under the new lease, which is not yet recorded
	inst, _ := readInstance(t, ctx, admin, r.Key())
	if inst.Weight != api.Weight {
		t.Fatalf("re-registration wrote %+v", inst)
	}
	done := make(chan error, 1)
	go func() { done <- r.Update(ctx, func(i *registry.Instance) { i.Weight = 42 }) }()
	select {
	case <-gate.waits: // Update is at the lock the re-registration holds
	case <-ctx.Done():
		t.Fatal("Update never started")
	}
	close(gate.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Update during re-registration: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Update did not return")
	}
	// Update returned nil: etcd holds the new value, under the new lease.
	inst, lease := readInstance(t, ctx, admin, r.Key())
	if inst.Weight != 42 || lease == old || lease != r.Lease() {
		t.Fatalf("after Update returned: %+v under lease %x (old %x, current %x), want weight 42 under the current lease", inst, lease, old, r.Lease())
	}
	if r.State() != registry.Registered {
		t.Fatalf("state %v", r.State())
	}
}

// An Update while the registration is Lost says so, keeps its value, and
// the value is what the re-registration writes.
func TestUpdateWhileLostFailsAndIsWrittenByTheReregistration(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	gate := newHookGate(registry.HookLost)
	r := register(t, ctx, cli, api, registry.WithHook(gate.hook))

	if _, err := admin.Revoke(ctx, r.Lease()); err != nil {
		t.Fatal(err)
	}
	gate.wait(t, ctx)
	err := r.Update(ctx, func(i *registry.Instance) { i.State = registry.InstanceDraining })
	if !errors.Is(err, registry.ErrNotRegistered) {
		t.Fatalf("Update while lost: err = %v, want ErrNotRegistered", err)
	}
	if !r.Instance().Draining() {
		t.Fatal("the value of a failed Update was not kept")
	}
	close(gate.release)
	waitState(t, ctx, r, registry.Registered)
	if inst, lease := readInstance(t, ctx, admin, r.Key()); !inst.Draining() || lease != r.Lease() {
		t.Fatalf("re-registration wrote %+v under %x, want draining under %x", inst, lease, r.Lease())
	}
}

// An Update of a key that another lease took fails (Txn not Succeeded);
// the registration never takes the key back, and writes the kept value
// once the key is free again.
func TestUpdateOfAKeyTakenOutOfBandFails(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 30*time.Second)
	r := register(t, ctx, cli, api)

	g, err := admin.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, r.Key(), `{"addr":"127.0.0.1:8443"}`, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, func(i *registry.Instance) { i.Weight = 5 }); !errors.Is(err, registry.ErrNotRegistered) {
		t.Fatalf("Update of a key held by another lease: err = %v, want ErrNotRegistered", err)
	}
	waitState(t, ctx, r, registry.Lost)
	if !errors.Is(r.Err(), registry.ErrDuplicateInstance) {
		t.Fatalf("lost because %v, want ErrDuplicateInstance", r.Err())
	}
	if _, lease := readInstance(t, ctx, admin, r.Key()); lease != g.ID {
		t.Fatalf("the registration took the key back: lease %x, want %x", lease, g.ID)
	}
	if _, err := admin.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, r, registry.Registered)
	if inst, lease := readInstance(t, ctx, admin, r.Key()); inst.Weight != 5 || lease != r.Lease() {
		t.Fatalf("after the key was freed: %+v under %x, want weight 5 under %x", inst, lease, r.Lease())
	}
}

// Concurrent Updates each apply to the result of the previous one.
func TestUpdateIsAnAtomicReadModifyWrite(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 30*time.Second)
	r := register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001", Weight: 1})
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := r.Update(ctx, func(i *registry.Instance) { i.Weight++ }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if inst, _ := readInstance(t, ctx, cli, r.Key()); inst.Weight != 1+n {
		t.Fatalf("weight %d after %d increments from 1", inst.Weight, n)
	}
}

// A restarted instance (same service, ID and address) whose previous
// lease is still alive takes its key over instead of failing; the
// registration it displaced does not take it back.
func TestRegisterTakesOverItsOwnRegistrationAfterARestart(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	ctx := timeout(t, 30*time.Second)
	admin := c.Client(t)

	// The previous run: still alive as far as etcd knows (its lease has
	// most of its TTL left).
	prevMetrics := prometheus.NewRegistry()
	before := register(t, ctx, c.Client(t), api, registry.WithRegisterer(prevMetrics))
	oldLease := before.Lease()

	restarted := api
	restarted.Version = "1.2.4"
	after := register(t, ctx, c.Client(t), restarted)
	inst, lease := readInstance(t, ctx, admin, after.Key())
	if lease != after.Lease() || lease == oldLease || inst.Version != "1.2.4" {
		t.Fatalf("after the restart: %+v under lease %x, want version 1.2.4 under %x", inst, lease, after.Lease())
	}
	ttl, err := admin.TimeToLive(ctx, oldLease, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if len(ttl.Keys) != 0 {
		t.Fatalf("the old lease still holds %q", ttl.Keys)
	}

	// The displaced registration notices, and keeps trying without ever
	// taking the key back: each attempt reads, none writes.
	waitState(t, ctx, before, registry.Lost)
	if !errors.Is(before.Err(), registry.ErrDuplicateInstance) {
		t.Fatalf("displaced registration lost because %v, want ErrDuplicateInstance", before.Err())
	}
	index := c.RaftIndex()
	failed := metricValue(t, prevMetrics, "smartroute_registry_keepalive_failures_total")
	for metricValue(t, prevMetrics, "smartroute_registry_keepalive_failures_total") < failed+3 {
		if !before.WaitForStateChange(timeout(t, 50*time.Millisecond), registry.Lost) && ctx.Err() != nil {
			t.Fatal("the displaced registration stopped trying")
		}
	}
	if _, lease := readInstance(t, ctx, admin, after.Key()); lease != after.Lease() {
		t.Fatalf("the displaced registration took the key back")
	}
	// (One entry may be the old lease expiring.)
	if grown := c.RaftIndex() - index; grown > 1 {
		t.Errorf("the displaced registration wrote %d raft entries while retrying, want none", grown)
	}
	if after.State() != registry.Registered {
		t.Fatalf("restarted registration %v", after.State())
	}
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
