package etcdtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustGet(t *testing.T, ctx context.Context, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %d values, want 1", key, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}

func TestSingleNodeServesAndKeepsDataAcrossRestart(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := ctxT(t, 20*time.Second)
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	c.Stop(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := cli.Get(short, "k")
	cancel()
	if err == nil {
		t.Fatal("get succeeded while the cluster was stopped")
	}
	c.Restart(t)
	if got := mustGet(t, ctx, cli, "k"); got != "v1" {
		t.Fatalf("after restart k = %q, want v1", got)
	}
}

func TestThreeMemberClusterSurvivesLeaderKill(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	cli := c.Client(t)
	ctx := ctxT(t, 30*time.Second)

	leader := c.Leader(t)
	leader.Kill(t)
	if leader.Running() {
		t.Fatal("killed leader still running")
	}
	// The survivors elect a new leader and keep serving writes.
	next := c.Leader(t)
	if next == leader {
		t.Fatal("the killed member is still reported as leader")
	}
	if _, err := cli.Put(ctx, "k", "after-kill"); err != nil {
		t.Fatalf("put after leader kill: %v", err)
	}
	leader.Restart(t)
	// The restarted member catches up with what it missed.
	one := leader.Client(t)
	if got := mustGet(t, ctx, one, "k"); got != "after-kill" {
		t.Fatalf("restarted member has k = %q, want after-kill", got)
	}
}

func TestFullOutageKeepsData(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	cli := c.Client(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	c.Stop(t)
	for _, m := range c.Members() {
		if m.Running() {
			t.Fatalf("%s still running after Stop", m.Name())
		}
	}
	c.Restart(t)
	if got := mustGet(t, ctx, cli, "k"); got != "v" {
		t.Fatalf("k = %q after outage, want v", got)
	}
}

func TestCompactMakesOldRevisionsUnavailable(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := ctxT(t, 20*time.Second)
	first, err := cli.Put(ctx, "k", "1")
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := cli.Put(ctx, "k", "2"); err != nil {
		t.Fatalf("put: %v", err)
	}
	rev := c.Compact(t)
	if rev <= first.Header.Revision {
		t.Fatalf("compacted at %d, want past %d", rev, first.Header.Revision)
	}
	_, err = cli.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at compacted revision: err = %v, want ErrCompacted", err)
	}
}

func TestGRPCProxyServesKVWatchAndLeases(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	p := c.StartGRPCProxy(t)
	cli := p.Client(t)
	ctx := ctxT(t, 30*time.Second)
	if got := cli.Endpoints(); len(got) != 1 || got[0] != p.Endpoint() {
		t.Fatalf("proxy client endpoints %v", got)
	}
	wch := cli.Watch(ctx, "k")
	lease, err := cli.Grant(ctx, 10)
	if err != nil {
		t.Fatalf("grant through the proxy: %v", err)
	}
	if _, err := cli.Put(ctx, "k", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("put through the proxy: %v", err)
	}
	select {
	case wr := <-wch:
		if len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "v" {
			t.Fatalf("watch through the proxy: %+v", wr)
		}
	case <-ctx.Done():
		t.Fatal("no watch event through the proxy")
	}
	if got := mustGet(t, ctx, c.Client(t), "k"); got != "v" {
		t.Fatalf("cluster has k = %q", got)
	}
	if _, err := cli.KeepAliveOnce(ctx, lease.ID); err != nil {
		t.Fatalf("keepalive through the proxy: %v", err)
	}
	if c.RaftIndex() == 0 {
		t.Fatal("RaftIndex is 0 on a cluster that was written to")
	}
}

func TestCutOffMemberAnswersNothingUntilRestored(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := ctxT(t, 20*time.Second)
	mustGet := func() error {
		gctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := cli.Get(gctx, "k")
		return err
	}
	if err := mustGet(); err != nil {
		t.Fatal(err)
	}
	restore := c.Member(0).CutOff(t)
	if err := mustGet(); err == nil {
		t.Fatal("a cut off member answered")
	}
	restore()
	for err := mustGet(); err != nil; err = mustGet() {
		if ctx.Err() != nil {
			t.Fatalf("no answer after the cut was restored: %v", err)
		}
	}
}
