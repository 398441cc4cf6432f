package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testlog"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

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

func newEtcd(t *testing.T, cli *clientv3.Client, service string, opts ...resolver.Option) *resolver.Etcd {
	t.Helper()
	opts = append([]resolver.Option{
		resolver.WithLogger(testlog.New(t)),
		resolver.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
	}, opts...)
	r, err := resolver.NewEtcd(cli, service, opts...)
	if err != nil {
		t.Fatalf("NewEtcd: %v", err)
	}
	return r
}

func TestEtcdResolverFollowsRegistrations(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 30*time.Second)

	// Another service whose name starts the same must never show up.
	register(t, ctx, cli, registry.Instance{Service: "api-canary", Addr: "127.0.0.1:9999"})
	reg := prometheus.NewRegistry()
	w := startWatch(t, ctx, newEtcd(t, cli, "api", resolver.WithRegisterer(reg)))
	if s := w.waitFor(t, ctx, "the first State", func(resolver.State) bool { return true }); s.Err != nil || len(s.Endpoints) != 0 {
		t.Fatalf("first State = %s, want the empty set", describe(s))
	}

	a := register(t, ctx, cli, registry.Instance{
		Service: "api", ID: "a", Addr: "127.0.0.1:8001", Weight: 3, Zone: "z1", Version: "1.2.3",
		Labels: map[string]string{"canary": "true"},
	})
	s := w.waitAddrs(t, ctx, "127.0.0.1:8001")
	got := endpoint(t, s, "127.0.0.1:8001")
	if got.Weight != 3 || got.Zone != "z1" || !maps.Equal(got.Labels, map[string]string{"canary": "true"}) || got.Draining {
		t.Fatalf("endpoint attributes = %+v", got)
	}
	o := got.Origin
	if o.Kind != "etcd" || o.Name != "/services/api/a" || o.ID != "a" || o.Version != "1.2.3" ||
		o.Revision == 0 || o.Lease != int64(a.Lease()) {
		t.Fatalf("origin = %+v, want etcd key /services/api/a, id a, version 1.2.3, lease %x", o, a.Lease())
	}

	b := register(t, ctx, cli, registry.Instance{Service: "api", ID: "b", Addr: "127.0.0.1:8002"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")

	if err := a.Update(ctx, func(i *registry.Instance) { i.Weight = 7 }); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, ctx, "a's new weight", func(s resolver.State) bool {
		return s.Err == nil && len(s.Endpoints) == 2 && s.Endpoints[0].Weight == 7
	})

	if err := b.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	s = w.waitFor(t, ctx, "b draining", func(s resolver.State) bool {
		return s.Err == nil && len(s.Endpoints) == 2 && s.Endpoints[1].Draining
	})
	if s.Endpoints[0].Draining {
		t.Fatalf("a is draining too: %s", describe(s))
	}

	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.waitAddrs(t, ctx, "127.0.0.1:8002")
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.waitAddrs(t, ctx)

	labels := map[string]string{"kind": "etcd", "target": "etcd:///api"}
	if n, want := metricValue(t, reg, "smartroute_resolver_updates_total", labels), len(w.history()); n != float64(want) {
		t.Errorf("updates_total = %v, want %d (one per delivery)", n, want)
	}
	if n := metricValue(t, reg, "smartroute_resolver_endpoints", labels); n != 0 {
		t.Errorf("endpoints gauge = %v after every instance left", n)
	}
	for _, s := range w.history() {
		for _, e := range s.Endpoints {
			if e.Addr == "127.0.0.1:9999" {
				t.Fatalf("api-canary's instance delivered for api: %s", describe(s))
			}
		}
		if s.Err != nil {
			t.Fatalf("error delivered with etcd up: %v", s.Err)
		}
	}
}

func TestEtcdResolverDeliversEndpointsManagerValues(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	em, err := endpoints.NewManager(cli, registry.DefaultPrefix+"/api")
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, newEtcd(t, cli, "api"))
	w.waitAddrs(t, ctx)

	if err := em.AddEndpoint(ctx, "/services/api/e1", endpoints.Endpoint{Addr: "127.0.0.1:9001", Metadata: map[string]any{"x": 1}}); err != nil {
		t.Fatal(err)
	}
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:9002"})
	s := w.waitAddrs(t, ctx, "127.0.0.1:9001", "127.0.0.1:9002")
	if o := endpoint(t, s, "127.0.0.1:9001").Origin; o.ID != "e1" || o.Name != "/services/api/e1" {
		t.Fatalf("endpoints-manager origin = %+v, want id e1", o)
	}
	if err := em.DeleteEndpoint(ctx, "/services/api/e1"); err != nil {
		t.Fatal(err)
	}
	w.waitAddrs(t, ctx, "127.0.0.1:9002")
}

func TestEtcdResolverSkipsUndecodableValues(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	reg := prometheus.NewRegistry()
	failures := func() float64 {
		return metricValue(t, reg, "smartroute_resolver_decode_failures_total", map[string]string{"kind": "etcd", "target": "etcd:///api"})
	}
	put := func(key, val string) {
		t.Helper()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}

	// Garbage already there when the resolver lists.
	put("/services/api/garbage", "not json")
	put("/services/api/deep/er", `{"addr":"127.0.0.1:7000"}`) // not <prefix>/<service>/<id>
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001"})
	w := startWatch(t, ctx, newEtcd(t, cli, "api", resolver.WithRegisterer(reg),
		resolver.WithEtcdHealthCheck(100*time.Millisecond, 300*time.Millisecond)))
	w.waitAddrs(t, ctx, "127.0.0.1:8001")
	if got := failures(); got != 2 {
		t.Fatalf("decode failures after the list = %v, want 2", got)
	}

	// Garbage arriving through the watch: skipped, the rest delivered.
	put("/services/api/wrong-type", `{"addr":"127.0.0.1:8003","weight":"heavy"}`)
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8002"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")
	if got := failures(); got != 3 {
		t.Fatalf("decode failures after the watch = %v, want 3", got)
	}

	// A good key turned bad keeps its last good value; stale beats empty.
	put("/services/api/c", `{"addr":"127.0.0.1:8004","zone":"z1"}`)
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8004")
	put("/services/api/c", `{"addr":"127.0.0.1:8004","state":"exploded"}`)
	waitMetric(t, ctx, reg, "smartroute_resolver_decode_failures_total", map[string]string{"kind": "etcd"}, 4)
	put("/services/api/d", `{"addr":"127.0.0.1:8005"}`)
	s := w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8004", "127.0.0.1:8005")
	if e := endpoint(t, s, "127.0.0.1:8004"); e.Zone != "z1" {
		t.Fatalf("key turned bad: endpoint %+v, want its last good value", e)
	}
	if got := failures(); got != 4 {
		t.Fatalf("decode failures = %v, want 4 (one per bad key and revision)", got)
	}

	// A re-list (after the connection to etcd was cut) sees the same bad
	// values again: they are not logged or counted again.
	restore := cutProxy(t, c.Member(0))
	w.waitErr(t, ctx)
	restore()
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8004", "127.0.0.1:8005")
	if n := metricValue(t, reg, "smartroute_resolver_relists_total", map[string]string{"reason": "unreachable"}); n < 1 {
		t.Fatalf("relists_total{reason=unreachable} = %v, want a re-list", n)
	}
	if got := failures(); got != 4 {
		t.Fatalf("decode failures after a re-list = %v, want still 4", got)
	}
}

// cutProxy stops a member's client proxy, cutting every client connection
// through it, and returns a function that starts it again.
func cutProxy(t *testing.T, m *etcdtest.Member) (restore func()) {
	t.Helper()
	m.Proxy().Stop()
	return func() {
		t.Helper()
		if err := m.Proxy().Start(); err != nil {
			t.Fatalf("restart proxy of %s: %v", m.Name(), err)
		}
	}
}

func TestFaultEtcdResolverRelistsAfterCompaction(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	ctx := timeout(t, 40*time.Second)
	// The resolver sees etcd through member 0 only; writes go through
	// member 1, so they go on while the resolver is cut off.
	watched := c.Member(0).Client(t)
	writer := c.Member(1).Client(t)
	reg := prometheus.NewRegistry()
	// A long health check: the resolver must not notice the cut by itself
	// and re-list; its watch resumes from its old revision, which
	// compaction has removed.
	r := newEtcd(t, watched, "api", resolver.WithRegisterer(reg), resolver.WithEtcdHealthCheck(time.Minute, time.Minute))

	a := register(t, ctx, writer, registry.Instance{Service: "api", ID: "a", Addr: "127.0.0.1:8001"})
	b := register(t, ctx, writer, registry.Instance{Service: "api", ID: "b", Addr: "127.0.0.1:8002"})
	w := startWatch(t, ctx, r)
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")

	restore := cutProxy(t, c.Member(0))
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	register(t, ctx, writer, registry.Instance{Service: "api", ID: "c", Addr: "127.0.0.1:8003"})
	if err := b.Update(ctx, func(i *registry.Instance) { i.Weight = 9 }); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // churn that the resolver must not replay
		d := register(t, ctx, writer, registry.Instance{Service: "api", ID: "tmp", Addr: "127.0.0.1:8100"})
		if err := d.Close(context.Background()); err != nil {
			t.Fatalf("churn %d: %v", i, err)
		}
	}
	c.Compact(t)
	restore()

	s := w.waitAddrs(t, ctx, "127.0.0.1:8002", "127.0.0.1:8003")
	if e := endpoint(t, s, "127.0.0.1:8002"); e.Weight != 9 {
		t.Fatalf("b after re-list: %+v, want weight 9", e)
	}
	if n := metricValue(t, reg, "smartroute_resolver_relists_total", map[string]string{"reason": "compacted"}); n < 1 {
		t.Fatalf("relists_total{reason=compacted} = %v, want the re-list to come from the compaction", n)
	}
	// Still watching after the re-list.
	register(t, ctx, writer, registry.Instance{Service: "api", ID: "e", Addr: "127.0.0.1:8005"})
	w.waitAddrs(t, ctx, "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8005")
	for _, s := range w.history() {
		if slicesContain(addrs(s.Endpoints), "127.0.0.1:8100") {
			t.Fatalf("an instance that lived only while the resolver was cut off was delivered: %s", describe(s))
		}
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestFaultEtcdResolverKeepsLastSetWhileEtcdIsDown(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	ctx := timeout(t, 40*time.Second)
	cli := c.Client(t)
	reg := prometheus.NewRegistry()
	r := newEtcd(t, cli, "api", resolver.WithRegisterer(reg),
		resolver.WithEtcdHealthCheck(100*time.Millisecond, 300*time.Millisecond))
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001"})
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8002"})
	w := startWatch(t, ctx, r)
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")

	c.Stop(t)
	s := w.waitErr(t, ctx)
	if got := addrs(s.Endpoints); len(got) != 2 {
		t.Fatalf("during the outage: %s, want the error with the last set", describe(s))
	}
	// Several failed attempts: each keeps the set.
	waitMetric(t, ctx, reg, "smartroute_resolver_errors_total", map[string]string{"kind": "etcd"}, 3)
	c.Restart(t)
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8003"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")

	sawErr := false
	for _, s := range w.history() {
		if s.Err != nil {
			sawErr = true
		}
		if len(s.Endpoints) < 2 {
			t.Fatalf("a State lost endpoints: %s", describe(s))
		}
	}
	if !sawErr {
		t.Fatal("no error reported during the outage")
	}
}

func TestEtcdResolverReportsMemberWithoutLeader(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	ctx := timeout(t, 40*time.Second)
	m0 := c.Member(0)
	// Without the require-leader watch nothing would tell the resolver:
	// m0 stays up and its health check is off for this test.
	r := newEtcd(t, m0.Client(t), "api", resolver.WithEtcdHealthCheck(time.Minute, 2*time.Second))
	register(t, ctx, c.Member(1).Client(t), registry.Instance{Service: "api", Addr: "127.0.0.1:8001"})
	w := startWatch(t, ctx, r)
	w.waitAddrs(t, ctx, "127.0.0.1:8001")

	// m0 loses quorum: it has no leader, but still answers its clients.
	c.Member(1).Kill(t)
	c.Member(2).Kill(t)
	s := w.waitErr(t, ctx)
	if got := addrs(s.Endpoints); len(got) != 1 || got[0] != "127.0.0.1:8001" {
		t.Fatalf("after losing the leader: %s, want the error with the last set", describe(s))
	}
	c.Member(1).Restart(t)
	c.Member(2).Restart(t)
	c.Leader(t)
	register(t, ctx, c.Member(1).Client(t), registry.Instance{Service: "api", Addr: "127.0.0.1:8002"})
	w.waitAddrs(t, ctx, "127.0.0.1:8001", "127.0.0.1:8002")
}

func TestEtcdResolverWatchEndsWhenClientIsClosed(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	ctx := timeout(t, 20*time.Second)
	cli := c.Client(t)
	w := startWatch(t, ctx, newEtcd(t, cli, "api"))
	w.waitAddrs(t, ctx)
	cli.Close()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup's stop
		if !errors.Is(err, resolver.ErrClientClosed) {
			t.Fatalf("Watch returned %v, want ErrClientClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Watch did not return after its client was closed")
	}
}

func TestEtcdResolverUsesPrefix(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8001"}, registry.WithPrefix("/prod"))
	register(t, ctx, cli, registry.Instance{Service: "api", Addr: "127.0.0.1:8002"}) // under /services
	w := startWatch(t, ctx, newEtcd(t, cli, "api", resolver.WithPrefix("/prod")))
	s := w.waitAddrs(t, ctx, "127.0.0.1:8001")
	if name := s.Endpoints[0].Origin.Name; name != "/prod/api/127.0.0.1:8001" {
		t.Fatalf("origin name %q", name)
	}
}

// Writer and reader given the same prefix agree, whatever its trailing
// slashes; "/" is the root for both. Before, registry.WithPrefix("/")
// wrote under /services while the resolver read /.
func TestEtcdPrefixIsTheSameForWriterAndReader(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := timeout(t, 20*time.Second)
	for i, tc := range []struct{ writer, reader, key string }{
		{"/", "/", "/root/127.0.0.1:8001"},
		{"/prod/", "/prod", "/prod/trail/127.0.0.1:8002"},
		{"/stage", "/stage//", "/stage/trail2/127.0.0.1:8003"},
	} {
		service := strings.Split(tc.key, "/")[len(strings.Split(tc.key, "/"))-2]
		addr := fmt.Sprintf("127.0.0.1:%d", 8001+i)
		r := register(t, ctx, cli, registry.Instance{Service: service, Addr: addr}, registry.WithPrefix(tc.writer))
		if r.Key() != tc.key {
			t.Errorf("prefix %q: key %q, want %q", tc.writer, r.Key(), tc.key)
		}
		w := startWatch(t, ctx, newEtcd(t, cli, service, resolver.WithPrefix(tc.reader)))
		s := w.waitAddrs(t, ctx, addr)
		if name := s.Endpoints[0].Origin.Name; name != tc.key {
			t.Errorf("reader prefix %q: origin %q, want %q", tc.reader, name, tc.key)
		}
	}
}

func TestNewEtcdRejectsBadArguments(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for _, tc := range []struct {
		name    string
		cli     *clientv3.Client
		service string
		opts    []resolver.Option
	}{
		{"nil client", nil, "api", nil},
		{"empty service", cli, "", nil},
		{"slash in service", cli, "a/b", nil},
		{"bad backoff", cli, "api", []resolver.Option{resolver.WithBackoff(time.Second, time.Millisecond)}},
		{"bad health check", cli, "api", []resolver.Option{resolver.WithEtcdHealthCheck(0, time.Second)}},
	} {
		if _, err := resolver.NewEtcd(tc.cli, tc.service, tc.opts...); err == nil {
			t.Errorf("%s: NewEtcd succeeded", tc.name)
		}
	}
	// Two resolvers of one target share a registerer, and its series.
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := resolver.NewEtcd(cli, "api", resolver.WithRegisterer(reg)); err != nil {
			t.Fatalf("second resolver on one registerer: %v", err)
		}
	}
}
