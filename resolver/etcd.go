package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdwatch"
	"github.com/smartroute/smartroute/registry"
)

// Etcd is a Resolver for a service registered in etcd by the registry
// package: the instances under registry.ServicePrefix(prefix, service).
//
// Watch lists the prefix once, delivers the set, then follows a watch
// from the next revision, and delivers the whole set again after every
// change:
//
//   - values are decoded with registry.Decode, which also understands what
//     etcd's client/v3/naming/endpoints manager writes; a value that cannot
//     be decoded is skipped (a key that held a good value keeps it), logged
//     and counted once per key and revision, and never stops the watch;
//   - draining instances are delivered with Draining set;
//   - when the watch falls behind a compaction, or etcd ends it, Watch lists
//     the prefix again, delivers the difference, and watches again;
//   - when etcd stops answering — the watch is not created in time, a
//     member loses its leader (the watch is opened with
//     clientv3.WithRequireLeader), a list fails, or the member's status,
//     asked whenever the watch has been silent for a check interval (see
//     WithEtcdHealthCheck), is not answered or shows no leader — Watch
//     reports the error with the last good set, as stale beats empty, and
//     lists again with capped, jittered backoff until etcd is back.
//
// A healthy etcd on which nothing is written is not an outage: the check
// is not a progress request, which etcd leaves unanswered while the watch
// starts beyond the current revision, and which its gRPC proxy never
// answers. Each watch gets a gRPC stream of its own, opened with a fresh
// auth token, so a watch created after a token expired is not refused on
// an old stream. All of it works the same through etcd's gRPC proxy.
//
// An Etcd holds no goroutine of its own: each Watch call runs on its
// caller's goroutine, independently of the others. It is safe for
// concurrent use.
type Etcd struct {
	cli     *clientv3.Client
	service string
	key     string // the watched prefix, with its trailing '/'
	target  string // etcd:///<service>, for logs and metrics
	o       options
	log     *slog.Logger
	m       *resolverMetrics
}

// NewEtcd returns a resolver for service, read through cli. The caller
// keeps ownership of cli; Watch returns an error wrapping ErrClientClosed
// once it is closed. Options: WithPrefix, WithLogger, WithRegisterer,
// WithBackoff, WithEtcdHealthCheck.
func NewEtcd(cli *clientv3.Client, service string, opts ...Option) (*Etcd, error) {
	if cli == nil {
		return nil, errors.New("resolver: NewEtcd: nil etcd client")
	}
	if err := validateService(service); err != nil {
		return nil, fmt.Errorf("resolver: %w: %w", err, ErrInvalidTarget)
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	target := Target{Scheme: SchemeEtcd, Endpoint: service}.String()
	m, err := newResolverMetrics(o.registerer, kindEtcd, target)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	key := registry.ServicePrefix(o.prefix, service)
	return &Etcd{
		cli:     cli,
		service: service,
		key:     key,
		target:  target,
		o:       o,
		log:     o.logger.With("target", target, "prefix", key),
		m:       m,
	}, nil
}

// Prefix returns the etcd prefix the resolver watches, with its trailing
// '/'.
func (e *Etcd) Prefix() string { return e.key }

// Watch implements Resolver. It returns ctx's error when ctx ends, or an
// error wrapping ErrClientClosed when the etcd client was closed.
func (e *Etcd) Watch(ctx context.Context, update func(State)) error {
	w := &etcdWatch{e: e, set: newEtcdSet(e.o.prefix), n: newNotifier(update, e.m)}
	return w.run(ctx)
}

// Causes that end following the watch and make Watch list again.
var (
	// errNoAnswer: etcd did not answer within the timeout.
	errNoAnswer = etcdwatch.ErrNoAnswer
)

// compactedError ends a watch that fell behind a compaction.
type compactedError struct{ rev int64 }

func (c compactedError) Error() string {
	return fmt.Sprintf("watch fell behind compaction at revision %d", c.rev)
}

// unreachableError ends a watch whose stream stopped answering.
type unreachableError struct{ err error }

func (u unreachableError) Error() string { return u.err.Error() }
func (u unreachableError) Unwrap() error { return u.err }

// etcdWatch is one Watch call's state.
type etcdWatch struct {
	e      *Etcd
	set    *etcdSet
	n      *notifier
	listed bool // the prefix was listed successfully at least once
}

func (w *etcdWatch) run(ctx context.Context) error {
	e := w.e
	failures := 0
	for {
		rev, err := w.list(ctx)
		if err == nil {
			var healthy bool
			healthy, err = w.follow(ctx, rev)
			if healthy {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.cli.Ctx().Err() != nil {
			return fmt.Errorf("resolver: watch %s: %w", e.target, ErrClientClosed)
		}
		var compacted compactedError
		var unreachable unreachableError
		switch {
		case errors.As(err, &compacted):
			// Nothing is wrong with the set we hold, it is only behind:
			// list again at once.
			e.log.Info("resolver: watch fell behind a compaction; listing again", "compact_revision", compacted.rev)
			e.m.relist(relistCompacted)
			continue
		case errors.As(err, &unreachable):
			e.m.relist(relistUnreachable)
		case rev != 0:
			e.m.relist(relistWatchClosed)
		}
		level := slog.LevelDebug
		if w.n.fail(err) {
			level = slog.LevelWarn
		}
		e.log.Log(ctx, level, "resolver: etcd unavailable; keeping the last set", "err", err, "endpoints", len(w.n.last))
		if err := sleepCtx(ctx, e.o.backoff.Delay(failures)); err != nil {
			return err
		}
		failures++
	}
}

// list reads the whole prefix, delivers the set if it changed, and returns
// the revision to watch after.
func (w *etcdWatch) list(ctx context.Context) (int64, error) {
	e := w.e
	lctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), e.o.etcdTimeout)
	defer cancel()
	resp, err := e.cli.Get(lctx, e.key, clientv3.WithPrefix())
	if err != nil {
		if ctx.Err() == nil && lctx.Err() != nil {
			err = fmt.Errorf("%w within %v: %w", errNoAnswer, e.o.etcdTimeout, err)
		}
		return 0, fmt.Errorf("resolver: list %s: %w", e.key, err)
	}
	before := w.n.last
	for _, b := range w.set.reset(resp.Kvs) {
		w.reportBad(b)
	}
	eps := w.set.endpoints()
	if w.n.good(eps) && w.listed {
		added, removed := diffAddrs(before, eps)
		e.log.Info("resolver: listed again", "revision", resp.Header.Revision,
			"endpoints", len(eps), "added", added, "removed", removed)
	}
	w.listed = true
	return resp.Header.Revision, nil
}

// follow watches the prefix from rev+1 and applies its events until the
// watch must be replaced; the returned error says why. healthy reports
// whether etcd created the watch and it stayed up for a check interval,
// after which retries start again from the shortest backoff.
//
// The watch gets a gRPC stream of its own, which requires a leader (see
// etcdwatch.StreamContext): a stream opened for each attempt carries a
// fresh auth token, and a member without a leader ends it. While it is
// silent for the check interval, an etcdwatch.Checker asks the member for
// its status; no progress request is sent, since etcd leaves one
// unanswered on a quiet cluster (the watch starts beyond the current
// revision) and its gRPC proxy never answers one.
func (w *etcdWatch) follow(ctx context.Context, rev int64) (healthy bool, err error) {
	e := w.e
	wctx, cancel := context.WithCancelCause(etcdwatch.StreamContext(ctx))
	defer cancel(nil)
	noAnswer := unreachableError{fmt.Errorf("resolver: watch %s: %w within %v", e.key, errNoAnswer, e.o.etcdTimeout)}

	// The client's Watch blocks while its stream is reconnecting: cut it
	// off if it takes longer than an answer may.
	stuck := time.AfterFunc(e.o.etcdTimeout, func() { cancel(noAnswer) })
	wch := e.cli.Watch(wctx, e.key, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
	if !stuck.Stop() {
		return false, noAnswer
	}
	chk := etcdwatch.StartChecker(wctx, e.cli, e.o.checkInterval, e.o.etcdTimeout)
	defer chk.Stop()
	created := time.NewTimer(e.o.etcdTimeout)
	defer created.Stop()
	var since time.Time // when etcd created the watch
	up := func() bool { return !since.IsZero() && time.Since(since) >= e.o.checkInterval }
	for {
		select {
		case <-ctx.Done():
			return up(), ctx.Err()
		case <-created.C:
			return false, noAnswer
		case err := <-chk.Failed():
			return up(), unreachableError{fmt.Errorf("resolver: watch %s: %w", e.key, err)}
		case wr, ok := <-wch:
			if !ok {
				if cause := context.Cause(wctx); errors.As(cause, new(unreachableError)) {
					return up(), cause
				}
				return up(), fmt.Errorf("resolver: watch %s: closed", e.key)
			}
			chk.Heard()
			if wr.Created && since.IsZero() {
				since = time.Now()
				created.Stop()
			}
			if wr.CompactRevision != 0 {
				return up(), compactedError{wr.CompactRevision}
			}
			if err := wr.Err(); err != nil {
				if etcdwatch.IsAuthError(err) {
					err = fmt.Errorf("%w (watching again on a new stream, with a new token)", err)
				}
				return up(), fmt.Errorf("resolver: watch %s: %w", e.key, err)
			}
			if len(wr.Events) == 0 {
				continue // created, or a duplicate created from the gRPC proxy
			}
			w.apply(wr.Events)
		}
	}
}

// apply applies one watch response's events and delivers the set if it
// changed.
func (w *etcdWatch) apply(events []*clientv3.Event) {
	for _, ev := range events {
		switch ev.Type {
		case mvccpb.PUT:
			if b, fresh := w.set.put(ev.Kv); fresh {
				w.reportBad(b)
			}
		case mvccpb.DELETE:
			w.set.del(string(ev.Kv.Key))
		}
	}
	eps := w.set.endpoints()
	if w.n.good(eps) {
		w.e.log.Debug("resolver: update", "endpoints", len(eps), "revision", events[len(events)-1].Kv.ModRevision)
	}
}

// reportBad logs and counts a value that cannot be decoded; the set
// reports each key and revision once.
func (w *etcdWatch) reportBad(b badValue) {
	w.e.m.decodeFailures.Inc()
	w.e.log.Warn("resolver: skipping a value that cannot be decoded", "key", b.Key, "revision", b.Revision, "err", b.Err)
}

// diffAddrs counts the addresses added and removed between two sorted sets.
func diffAddrs(before, after []Endpoint) (added, removed int) {
	old := make(map[string]bool, len(before))
	for _, ep := range before {
		old[ep.Addr] = true
	}
	for _, ep := range after {
		if !old[ep.Addr] {
			added++
		}
		delete(old, ep.Addr)
	}
	return added, len(old)
}

// sleepCtx waits for d or until ctx ends, and returns ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
