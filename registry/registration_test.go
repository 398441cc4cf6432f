package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/leakcheck"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// timeout bounds every test; a hang fails instead of eating the CI budget.
func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func register(t *testing.T, ctx context.Context, cli *clientv3.Client, inst registry.Instance, opts ...registry.Option) *registry.Registration {
	t.Helper()
	opts = append([]registry.Option{registry.WithLogger(testlog.New(t)), registry.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	r, err := registry.Register(ctx, cli, inst, opts...)
	if err != nil {
		t.Fatalf("Register(%+v): %v", inst, err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// get returns the key's value and lease, or ok=false if it is absent.
func get(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) (val []byte, lease clientv3.LeaseID, ok bool) {
	t.Helper()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, false
	}
	return resp.Kvs[0].Value, clientv3.LeaseID(resp.Kvs[0].Lease), true
}

func waitState(t *testing.T, ctx context.Context, r *registry.Registration, want registry.State) {
	t.Helper()
	for s := r.State(); s != want; s = r.State() {
		if !r.WaitForStateChange(ctx, s) {
			t.Fatalf("state stayed %v, want %v (last error: %v)", s, want, r.Err())
		}
	}
}

var api = registry.Instance{
	Service: "api",
	Addr:    "127.0.0.1:8443",
	Weight:  3,
	Zone:    "z1",
	Version: "1.2.3",
	Labels:  map[string]string{"canary": "true"},
}

func TestRegisterWritesKeyWithLeaseAndDesignJSON(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	r := register(t, ctx, cli, api)

	if want := "/services/api/127.0.0.1:8443"; r.Key() != want {
		t.Fatalf("key = %q, want %q", r.Key(), want)
	}
	val, lease, ok := get(t, ctx, cli, r.Key())
	if !ok {
		t.Fatal("key not written")
	}
	if lease == 0 || lease != r.Lease() {
		t.Fatalf("key lease = %x, registration lease = %x", lease, r.Lease())
	}
	var got map[string]any
	if err := json.Unmarshal(val, &got); err != nil {
		t.Fatalf("value is not JSON: %v", err)
	}
	want := map[string]any{
		"service": "api", "id": "127.0.0.1:8443", "addr": "127.0.0.1:8443",
		"weight": 3.0, "zone": "z1", "version": "1.2.3",
		"labels": map[string]any{"canary": "true"},
	}
	if gj, wj := mustJSON(t, got), mustJSON(t, want); gj != wj {
		t.Fatalf("value = %s, want %s", gj, wj)
	}
	ttl, err := cli.TimeToLive(ctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != int64(registry.DefaultTTL/time.Second) {
		t.Fatalf("granted TTL = %ds, want %v", ttl.GrantedTTL, registry.DefaultTTL)
	}
	if r.State() != registry.Registered {
		t.Fatalf("state = %v, want registered", r.State())
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCrashedRegistrationDisappearsWithinTTL(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	observer := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	const ttl = 2 * time.Second

	crashing := c.Client(t)
	r := register(t, ctx, crashing, api, registry.WithTTL(ttl))
	wch := observer.Watch(ctx, r.Key(), clientv3.WithFilterPut())

	// A crash: the process stops keeping the lease alive without revoking
	// it. Closing its client does exactly that.
	crashed := time.Now()
	crashing.Close()
	<-r.Done()

	select {
	case wr := <-wch:
		if len(wr.Events) == 0 || wr.Events[0].Type != mvccpb.DELETE {
			t.Fatalf("watch: %+v, want a delete", wr)
		}
		// etcd checks expiry every 500ms; allow that on top of the TTL.
		if gone := time.Since(crashed); gone > ttl+time.Second {
			t.Fatalf("key gone %v after the crash, want within the %v TTL", gone, ttl)
		}
	case <-ctx.Done():
		t.Fatal("key still present after the crash")
	}
	if r.State() != registry.Closed {
		t.Fatalf("state after client close = %v, want closed", r.State())
	}
}

func TestRegistrationRecoversAfterLeaseRevokedBehindItsBack(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	reg := prometheus.NewRegistry()
	r := register(t, ctx, cli, api, registry.WithRegisterer(reg))
	old := r.Lease()

	if _, err := admin.Revoke(ctx, old); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	waitState(t, ctx, r, registry.Lost)
	waitState(t, ctx, r, registry.Registered)

	_, lease, ok := get(t, ctx, admin, r.Key())
	if !ok {
		t.Fatal("key not written again after the lease was revoked")
	}
	if lease == old || lease != r.Lease() {
		t.Fatalf("key lease = %x, old %x, registration %x: want a new lease", lease, old, r.Lease())
	}
	if got := metricValue(t, reg, "smartroute_registry_lease_losses_total"); got != 1 {
		t.Fatalf("lease_losses_total = %v, want 1", got)
	}
	if got := metricValue(t, reg, "smartroute_registry_registered"); got != 1 {
		t.Fatalf("registered = %v, want 1", got)
	}
}

// metricValue returns the value of the named metric's single series.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestRegistrationRecoversAfterEtcdOutageLongerThanTTL(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	// Generous: on a loaded machine the outage and etcd's restart alone
	// have taken 12 s.
	ctx := timeout(t, 60*time.Second)
	r := register(t, ctx, cli, api, registry.WithTTL(time.Second))
	old := r.Lease()

	c.Stop(t)
	// The client gives the lease up once no keepalive answer came for the
	// TTL: the outage has outlasted the TTL when the state turns Lost.
	waitState(t, ctx, r, registry.Lost)
	c.Restart(t)
	waitState(t, ctx, r, registry.Registered)

	_, lease, ok := get(t, ctx, cli, r.Key())
	if !ok {
		t.Fatal("key missing after etcd came back")
	}
	if lease == old || lease != r.Lease() {
		t.Fatalf("key lease = %x, old %x, registration %x: want a new lease", lease, old, r.Lease())
	}
	ttl, err := cli.TimeToLive(ctx, lease)
	if err != nil || ttl.TTL < 0 { // -1: no such lease
		t.Fatalf("new lease not alive: %+v, %v", ttl, err)
	}
}

func TestRegisterRefusesSameIDAtAnotherAddress(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	first := register(t, ctx, cli, api)
	before := c.RaftIndex()

	dup := api
	dup.ID = first.Instance().ID
	dup.Addr = "127.0.0.1:9443"
	_, err := registry.Register(ctx, c.Client(t), dup, registry.WithLogger(testlog.New(t)))
	if !errors.Is(err, registry.ErrDuplicateInstance) {
		t.Fatalf("second Register: err = %v, want ErrDuplicateInstance", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:8443") {
		t.Errorf("error %q does not name the address that holds the ID", err)
	}
	val, lease, _ := get(t, ctx, cli, first.Key())
	inst, err := registry.Decode(registry.DefaultPrefix, first.Key(), val)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Addr != api.Addr || lease != first.Lease() {
		t.Fatalf("first registration overwritten: %+v lease %x", inst, lease)
	}
	// The key is read before a lease is granted: a refused registration
	// writes nothing.
	if after := c.RaftIndex(); after != before {
		t.Errorf("a refused registration wrote %d raft entries, want none", after-before)
	}
}

func TestUpdateAndDrainAreVisibleToReaders(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	reader := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	r := register(t, ctx, cli, api)

	read := func() registry.Instance {
		t.Helper()
		val, lease, ok := get(t, ctx, reader, r.Key())
		if !ok {
			t.Fatal("key missing")
		}
		if lease != r.Lease() {
			t.Fatalf("update dropped the lease: %x, want %x", lease, r.Lease())
		}
		inst, err := registry.Decode(registry.DefaultPrefix, r.Key(), val)
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}

	if err := r.Update(ctx, func(i *registry.Instance) {
		i.Weight = 7
		i.Version = "1.2.4"
		i.Labels = map[string]string{"canary": "false"}
	}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := read(); got.Weight != 7 || got.Version != "1.2.4" || got.Labels["canary"] != "false" {
		t.Fatalf("after Update reader sees %+v", got)
	}

	if err := r.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if got := read(); !got.Draining() || got.Weight != 7 {
		t.Fatalf("after Drain reader sees %+v, want draining with weight 7", got)
	}

	if err := r.Update(ctx, func(i *registry.Instance) { i.ID = "other" }); !errors.Is(err, registry.ErrIdentityChanged) {
		t.Fatalf("Update with another ID: err = %v, want ErrIdentityChanged", err)
	}
	if err := r.Update(ctx, func(i *registry.Instance) { i.State = "off" }); !errors.Is(err, registry.ErrInvalidInstance) {
		t.Fatalf("Update to a bad state: err = %v, want ErrInvalidInstance", err)
	}
	if got := r.Instance(); got.State != registry.InstanceDraining || got.Weight != 7 {
		t.Fatalf("a refused update changed the value: %+v", got)
	}
}

func TestCloseRemovesKeyAtOnce(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	r, err := registry.Register(ctx, cli, api, registry.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, ok := get(t, ctx, cli, r.Key()); ok {
		t.Fatal("key still present right after Close")
	}
	if r.State() != registry.Closed {
		t.Fatalf("state = %v, want closed", r.State())
	}
	if err := r.Update(ctx, func(*registry.Instance) {}); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Update after Close: err = %v, want ErrClosed", err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestKeyDeletedOutOfBandIsWrittenAgain(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	admin := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	r := register(t, ctx, cli, api)

	wch := admin.Watch(ctx, r.Key())
	if _, err := admin.Delete(ctx, r.Key()); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case wr := <-wch:
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.PUT {
					if clientv3.LeaseID(ev.Kv.Lease) != r.Lease() {
						t.Fatalf("rewritten under lease %x, want %x", ev.Kv.Lease, r.Lease())
					}
					return
				}
			}
		case <-ctx.Done():
			t.Fatal("key not written again after an out-of-band delete")
		}
	}
}

func TestKeySurvivesStoppingAnyOneMember(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	cli := c.Client(t)
	ctx := timeout(t, 60*time.Second)
	// etcd reports the remaining TTL in whole seconds; with 4 s the
	// keepalive every 1.3 s shows as a rise from 2 to 3.
	const ttl = 4 * time.Second
	r := register(t, ctx, cli, api, registry.WithTTL(ttl))
	start, err := cli.Get(ctx, r.Key())
	if err != nil {
		t.Fatal(err)
	}

	// Stop every member in turn, the leader first. Each time, wait until
	// the lease has been renewed through the survivors twice: keepalives
	// reach the new leader.
	order := []*etcdtest.Member{c.Leader(t)}
	for _, m := range c.Members() {
		if m != order[0] {
			order = append(order, m)
		}
	}
	for _, m := range order {
		m.Kill(t)
		survivor := c.Leader(t).Client(t)
		waitRenewals(t, ctx, survivor, r.Lease(), 2)
		m.Restart(t)
		c.Leader(t)
	}

	// No revision since the registration deleted the key.
	survivor := c.Leader(t).Client(t)
	wch := survivor.Watch(ctx, r.Key(), clientv3.WithRev(start.Header.Revision+1), clientv3.WithFilterPut())
	end, err := survivor.Put(ctx, "/marker", "x")
	if err != nil {
		t.Fatal(err)
	}
	marker := survivor.Watch(ctx, "/marker", clientv3.WithRev(end.Header.Revision))
	select {
	case wr := <-wch:
		t.Fatalf("key deleted while members were stopped one by one: %+v", wr.Events)
	case <-marker:
	}
	if r.State() != registry.Registered {
		t.Fatalf("state = %v, want registered", r.State())
	}
}

// waitRenewals waits until the lease's remaining TTL has gone up n times,
// each rise being a keepalive that reached the leader (or, once, the new
// leader extending every lease when it takes over).
func waitRenewals(t *testing.T, ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, n int) {
	t.Helper()
	last := int64(-1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for renewals := 0; renewals < n; {
		resp, err := cli.TimeToLive(ctx, lease)
		switch {
		case err != nil:
			// A member that follows a dead leader answers late; ask again.
		case resp.TTL <= 0:
			t.Fatalf("lease %x expired", lease)
		default:
			if last >= 0 && resp.TTL > last {
				renewals++
			}
			last = resp.TTL
		}
		select {
		case <-ctx.Done():
			t.Fatalf("lease %x renewed %d times, want %d (last error %v)", lease, renewals, n, err)
		case <-tick.C:
		}
	}
}

// TestNoGoroutineOutlivesClose runs alone (not parallel): it counts every
// registration goroutine of the process.
func TestNoGoroutineOutlivesClose(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := timeout(t, 20*time.Second)
	cli := c.Client(t)
	r := register(t, ctx, cli, api)
	// The registration's goroutine may not have been scheduled yet on a
	// busy machine: give it a moment to show.
	for deadline := time.Now().Add(5 * time.Second); goroutinesIn("registry.(*Registration)") == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no registration goroutine found while registered; the check below would prove nothing")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Close waits for its goroutines, so none may be left at all, not
	// even one on its way out. The etcd client stays open: the package
	// level goleak check covers what the client owns.
	if n := goroutinesIn("registry.(*Registration)"); n != 0 {
		t.Fatalf("%d registration goroutines outlive Close", n)
	}
}

// goroutinesIn counts goroutines with a frame whose function name contains
// fn.
func goroutinesIn(fn string) int {
	n := 0
	for _, g := range strings.Split(allStacks(), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

func allStacks() string {
	for size := 1 << 20; ; size *= 2 {
		buf := make([]byte, size)
		if n := runtime.Stack(buf, true); n < size {
			return string(buf[:n])
		}
	}
}
