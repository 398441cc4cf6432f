package etcdwatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/etcdwatch"
	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

func TestIsAuthError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{rpctypes.ErrInvalidAuthToken, true},
		{rpctypes.ErrGRPCInvalidAuthToken, true},
		{fmt.Errorf("watch: %w", rpctypes.ErrPermissionDenied), true},
		{rpctypes.ErrAuthOldRevision, true},
		{rpctypes.ErrUserEmpty, true},
		// A watch cancelled at creation: the reason comes back as text.
		{rpctypes.Error(status.Error(codes.FailedPrecondition, rpctypes.ErrGRPCInvalidAuthToken.Error())), true},
		{rpctypes.Error(status.Error(codes.FailedPrecondition, rpctypes.ErrGRPCPermissionDenied.Error())), true},
		{status.Error(codes.Unauthenticated, "whatever"), true},
		{rpctypes.ErrNoLeader, false},
		{rpctypes.ErrCompacted, false},
		{context.DeadlineExceeded, false},
		{errors.New("etcdserver: permission"), false},
	} {
		if got := etcdwatch.IsAuthError(tc.err); got != tc.want {
			t.Errorf("IsAuthError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestStreamContextGivesEachWatchItsOwnStream(t *testing.T) {
	ctx := context.Background()
	a, b := etcdwatch.StreamContext(ctx), etcdwatch.StreamContext(ctx)
	ma, _ := metadata.FromOutgoingContext(a)
	mb, _ := metadata.FromOutgoingContext(b)
	const key = "smartroute-watch-stream"
	if va, vb := ma.Get(key), mb.Get(key); len(va) != 1 || len(vb) != 1 || va[0] == vb[0] {
		t.Fatalf("stream keys %q and %q: two watches would share a stream", va, vb)
	}
	if got := ma.Get(rpctypes.MetadataRequireLeaderKey); len(got) != 1 || got[0] != rpctypes.MetadataHasLeader {
		t.Fatalf("metadata %v does not require a leader", ma)
	}
}

func TestCheckAnswersOnlyWhileTheMemberServesWithALeader(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.WithMembers(3))
	cli := c.Member(0).Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := etcdwatch.Check(ctx, cli, 5*time.Second); err != nil {
		t.Fatalf("healthy member: %v", err)
	}
	restore := c.Member(0).CutOff(t)
	if err := etcdwatch.Check(ctx, cli, 500*time.Millisecond); !errors.Is(err, etcdwatch.ErrNoAnswer) {
		t.Fatalf("cut off member: %v, want ErrNoAnswer", err)
	}
	restore()
	c.Member(1).Kill(t)
	c.Member(2).Kill(t)
	for {
		err := etcdwatch.Check(ctx, cli, 5*time.Second)
		if errors.Is(err, rpctypes.ErrNoLeader) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("member without a leader: %v, want ErrNoLeader", err)
		}
	}

	// Through the gRPC proxy, which does not pass require-leader on: the
	// status tells.
	c.Member(1).Restart(t)
	c.Member(2).Restart(t)
	c.Leader(t)
	p := c.StartGRPCProxy(t)
	pcli := p.Client(t)
	if err := etcdwatch.Check(ctx, pcli, 5*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	c.Member(1).Kill(t)
	c.Member(2).Kill(t)
	for {
		err := etcdwatch.Check(ctx, pcli, 5*time.Second)
		if errors.Is(err, rpctypes.ErrNoLeader) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("through the proxy, no leader: %v, want ErrNoLeader", err)
		}
	}
}
