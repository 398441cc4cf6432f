package mtls

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/backoff"
)

// errCompacted ends a watch that fell behind a compaction.
var errCompacted = errors.New("watch fell behind a compaction")

// watchLoop is the Store's watch goroutine and the raw values it has read.
// Only that goroutine (and NewStore, before starting it) touches it.
type watchLoop struct {
	s        *Store
	watchKey string // the watched prefix with its trailing '/'
	backoff  backoff.Exponential

	ca      rawValue
	sig     rawValue            // the bundle's signature
	revoked rawValue            // the revocation list
	crt     map[string]rawValue // every identity's certificate
	key     map[string]rawValue // the keys of the identities the Store loads
	clients map[string]rawValue // the client policies of the identities the Store loads

	// reported remembers the last refusal logged and counted per identity
	// ("" for the CA bundle), so that a value read again (after a re-list)
	// or re-validated (after a CA change) is not reported twice.
	reported map[string]refusal
}

// refusal identifies a refused value: the revisions read and the reason.
type refusal struct {
	crtRev, keyRev int64
	reason         Reason
}

func newWatchLoop(s *Store) *watchLoop {
	return &watchLoop{
		s:        s,
		watchKey: under(s.o.prefix),
		crt:      map[string]rawValue{},
		key:      map[string]rawValue{},
		clients:  map[string]rawValue{},
		reported: map[string]refusal{},
	}
}

// run follows the watch from rev+1 and lists again whenever the watch
// ends, until ctx ends or the etcd client is closed.
func (l *watchLoop) run(ctx context.Context, rev int64) {
	s := l.s
	defer func() {
		s.progress.fire()
		close(s.done)
	}()
	failures := 0
	for {
		err := l.follow(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if s.cli.Ctx().Err() != nil {
			l.endWith(fmt.Errorf("mtls: etcd client closed: %w", s.cli.Ctx().Err()))
			return
		}
		if errors.Is(err, errCompacted) {
			s.log.Info("mtls: watch fell behind a compaction; listing again", "err", err)
		} else {
			s.log.Warn("mtls: watch ended; keeping the last good material and listing again", "err", err)
		}
		for {
			if !errors.Is(err, errCompacted) || failures > 0 {
				if sleepCtx(ctx, l.backoff.Delay(failures)) != nil {
					return
				}
			}
			lctx, cancel := context.WithTimeout(ctx, s.o.etcdTimeout)
			rev, err = l.list(lctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				failures = 0
				break
			}
			if s.cli.Ctx().Err() != nil {
				l.endWith(fmt.Errorf("mtls: etcd client closed: %w", s.cli.Ctx().Err()))
				return
			}
			if failures == 0 {
				s.log.Warn("mtls: etcd unavailable; keeping the last good material", "err", err)
			} else {
				s.log.Debug("mtls: etcd still unavailable", "err", err, "attempt", failures+1)
			}
			failures++
		}
	}
}

func (l *watchLoop) endWith(err error) {
	l.s.log.Error("mtls: watch stopped; the last good material stays in use", "err", err)
	l.s.mu.Lock()
	l.s.loopErr = err
	l.s.mu.Unlock()
}

// list reads the whole prefix at one revision, validates what changed, and
// returns that revision.
func (l *watchLoop) list(ctx context.Context) (int64, error) {
	s := l.s
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), l.watchKey, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	var ca, sig, revoked rawValue
	crt, key, clients := map[string]rawValue{}, map[string]rawValue{}, map[string]rawValue{}
	for _, kv := range resp.Kvs {
		v := rawValue{value: kv.Value, rev: kv.ModRevision}
		kind, name := parseKey(s.o.prefix, string(kv.Key))
		if (kind == kindKey || kind == kindClients) && !s.o.wants(name) {
			continue // certificates of every identity are kept for the CA checks
		}
		switch kind {
		case kindCA:
			ca = v
		case kindCASig:
			sig = v
		case kindRevoked:
			revoked = v
		case kindCert:
			crt[name] = v
		case kindKey:
			key[name] = v
		case kindClients:
			clients[name] = v
		}
	}
	ch := changes{
		ca:      ca.rev != l.ca.rev || sig.rev != l.sig.rev,
		revoked: revoked.rev != l.revoked.rev,
		clients: map[string]bool{},
		ids:     map[string]bool{},
	}
	for _, m := range []map[string]rawValue{l.crt, l.key, crt, key} {
		for name := range m {
			if s.o.wants(name) && (l.crt[name].rev != crt[name].rev || l.key[name].rev != key[name].rev) {
				ch.ids[name] = true
			}
		}
	}
	for _, m := range []map[string]rawValue{l.clients, clients} {
		for name := range m {
			if l.clients[name].rev != clients[name].rev {
				ch.clients[name] = true
			}
		}
	}
	l.ca, l.sig, l.revoked, l.crt, l.key, l.clients = ca, sig, revoked, crt, key, clients
	l.reconcile(ch)
	l.advance(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// follow watches the prefix from rev+1 and applies its events until the
// watch ends; the error says why.
func (l *watchLoop) follow(ctx context.Context, rev int64) error {
	s := l.s
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, l.watchKey, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("%w at revision %d", errCompacted, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) > 0 {
			l.apply(wr.Events)
			l.advance(wr.Events[len(wr.Events)-1].Kv.ModRevision)
		} else if wr.IsProgressNotify() {
			l.advance(wr.Header.Revision)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch closed")
}

// apply records one watch response's events and validates what changed.
// A certificate and its key written in one transaction arrive in the same
// response, so they are validated together.
func (l *watchLoop) apply(events []*clientv3.Event) {
	ch := changes{clients: map[string]bool{}, ids: map[string]bool{}}
	for _, ev := range events {
		kind, name := parseKey(l.s.o.prefix, string(ev.Kv.Key))
		if (kind == kindKey || kind == kindClients) && !l.s.o.wants(name) {
			continue
		}
		v := rawValue{value: ev.Kv.Value, rev: ev.Kv.ModRevision}
		if ev.Type == mvccpb.DELETE {
			v = rawValue{} // absent
		}
		switch kind {
		case kindCA:
			l.ca, ch.ca = v, true
		case kindCASig:
			l.sig, ch.ca = v, true
		case kindRevoked:
			l.revoked, ch.revoked = v, true
		case kindCert:
			setRaw(l.crt, name, v)
			if l.s.o.wants(name) {
				ch.ids[name] = true
			}
		case kindKey:
			setRaw(l.key, name, v)
			ch.ids[name] = true
		case kindClients:
			setRaw(l.clients, name, v)
			ch.clients[name] = true
		}
	}
	if ch.any() {
		l.reconcile(ch)
	}
}

func setRaw(m map[string]rawValue, name string, v rawValue) {
	if v.rev == 0 {
		delete(m, name)
		return
	}
	m[name] = v
}

// advance records that the prefix has been read up to rev.
func (l *watchLoop) advance(rev int64) {
	if rev > l.s.rev.Load() {
		l.s.rev.Store(rev)
		l.s.progress.fire()
	}
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
