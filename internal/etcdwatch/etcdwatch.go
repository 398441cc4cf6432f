// Package etcdwatch holds what the registry's key watch and the etcd
// resolver's prefix watch share: how a watch is opened (on a gRPC stream of
// its own that requires a leader), how etcd's liveness is judged while a
// watch is silent, and which errors call for a fresh auth token.
//
// # Why liveness is not judged by progress requests
//
// A watch is silent both when nothing is written and when its stream is
// dead (a member cut off by the network keeps the TCP connection open; the
// client reconnects to a member that is gone without telling the watch).
// Something must be asked. etcd's progress request
// (clientv3.Client.RequestProgress) looks like the natural question and is
// wrong twice:
//
//   - etcd answers it only when every watcher on the gRPC stream is synced
//     and none starts beyond the current revision
//     (server/storage/mvcc/watchable_store.go, progressIfSync). A watch
//     opened from the revision after a list, or after our own write, starts
//     beyond the current revision until something else is written: on a
//     quiet cluster the request is never answered, and a healthy etcd is
//     reported down. Other watchers sharing the stream (a Registration and
//     a resolver on one client share one) are enough to silence it too.
//   - etcd's gRPC proxy (server/proxy/grpcproxy/watch.go) does not
//     implement progress requests at all: it logs "not supported request
//     type" and never answers.
//
// Watching from the listed revision instead of the next one, or asking
// only once the watcher is synced, fixes the first point for one watcher
// on a stream we own, not for the proxy. WithProgressNotify depends on the
// server's interval (10 minutes by default).
//
// Check asks instead, on the same client, for the member's status with
// clientv3.WithRequireLeader: one small unary RPC that the member answers
// from memory (no raft round, no disk, no key read), that the gRPC proxy
// forwards to a member rather than answering from its cache, and that fails
// in exactly the cases we must report: the member is unreachable (the call
// times out), has no leader (etcd refuses it, or, behind the proxy, answers
// with no leader), or the client was closed. It is asked only after the
// watch has been silent for the check interval, so a busy watch costs
// nothing.
//
// With several endpoints and no client keepalive, unary calls are spread
// over the members while a watch stays on one, so a stream stuck on one
// blackholed member is found when a check reaches that member; setting the
// client's DialKeepAliveTime closes such a connection, and the watch moves
// on by itself.
package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrNoAnswer is wrapped by Check's error when etcd did not answer within
// the timeout.
var ErrNoAnswer = errors.New("etcd did not answer")

// streamKey is the metadata key that gives each watch its own gRPC stream:
// clientv3 shares one stream among the watches whose contexts carry the
// same outgoing metadata.
const streamKey = "smartroute-watch-stream"

// StreamContext returns ctx for opening one watch: it requires a leader
// (clientv3.WithRequireLeader: a member that loses its leader ends the
// watch instead of leaving it silently stale) and gives the watch a gRPC
// stream of its own.
//
// A stream of its own matters for two reasons. etcd checks the auth token a
// stream was opened with each time a watch is created on it, and a stream
// outlives its token (a simple token expires once unused for its TTL, and
// lease keepalives do not use it): a watch created on a shared stream whose
// token expired is cancelled at creation, for as long as any other watch
// keeps that stream open. A new stream is opened with a fresh token. And a
// watch opened again after a failure gets a new stream instead of the one
// that failed.
func StreamContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
		streamKey, strconv.FormatUint(rand.Uint64(), 36))
}

// Check asks etcd, through cli, whether it serves: the status of a member
// (through the gRPC proxy, of a member behind it), which must have a
// leader. ctx should carry a timeout; when it expires the error wraps
// ErrNoAnswer. See the package documentation for why this is the question.
func Check(ctx context.Context, cli *clientv3.Client, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), timeout)
	defer cancel()
	resp, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(cctx, &pb.StatusRequest{})
	switch {
	case err != nil && ctx.Err() == nil && cctx.Err() != nil:
		return fmt.Errorf("%w within %v", ErrNoAnswer, timeout)
	case err != nil:
		return rpctypes.Error(err)
	case resp.Leader == 0:
		// Behind the gRPC proxy the require-leader metadata does not
		// reach the member: it answers, without a leader.
		return rpctypes.ErrNoLeader
	}
	return nil
}

// IsAuthError reports whether err is an authentication or authorization
// failure: an invalid or expired token, an auth store revision that moved
// on since the token was issued, an empty user, or a permission denied.
// Retrying on the same stream cannot help; a new stream gets a fresh token.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	err = rpctypes.Error(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) && (ee.Code() == codes.Unauthenticated || ee.Code() == codes.PermissionDenied) {
		return true
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	// A watch cancelled at creation carries the server's error as its
	// cancel reason, whole ("rpc error: code = Unauthenticated desc =
	// etcdserver: invalid auth token"), under FailedPrecondition.
	msg := err.Error()
	for _, e := range authErrors {
		if errors.Is(err, e) || strings.Contains(msg, rpctypes.ErrorDesc(e)) {
			return true
		}
	}
	return false
}

// authErrors are the errors that a new token may cure, or that say the
// user may not do what it asks.
var authErrors = []error{
	rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCAuthOldRevision,
	rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCAuthFailed,
}

// Checker checks etcd with Check whenever the watch it serves has been
// silent for the interval, in a goroutine of its own, until the first
// failed check or Stop. The owner calls Heard for every watch response.
type Checker struct {
	heard  chan struct{}
	failed chan error
	cancel context.CancelFunc
	done   chan struct{}
}

// StartChecker starts checking etcd through cli: every interval of silence,
// one Check bounded by timeout.
func StartChecker(ctx context.Context, cli *clientv3.Client, interval, timeout time.Duration) *Checker {
	ctx, cancel := context.WithCancel(ctx)
	c := &Checker{
		heard:  make(chan struct{}, 1),
		failed: make(chan error, 1),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go c.run(ctx, cli, interval, timeout)
	return c
}

func (c *Checker) run(ctx context.Context, cli *clientv3.Client, interval, timeout time.Duration) {
	defer close(c.done)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.heard:
			t.Reset(interval)
		case <-t.C:
			err := Check(ctx, cli, timeout)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.failed <- err
				return
			}
			t.Reset(interval)
		}
	}
}

// Heard tells the checker that the watch answered: the next check waits a
// full interval from now. It never blocks.
func (c *Checker) Heard() {
	select {
	case c.heard <- struct{}{}:
	default:
	}
}

// Failed delivers the error of the first failed check; the checker stops
// after it.
func (c *Checker) Failed() <-chan error { return c.failed }

// Stop stops the checker and waits until its goroutine has ended.
func (c *Checker) Stop() {
	c.cancel()
	<-c.done
}
