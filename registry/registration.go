package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdwatch"
)

// State is where a Registration stands.
type State int

const (
	// Registered: the key is written under a lease that is being kept
	// alive.
	Registered State = iota + 1
	// Lost: the lease or the key was lost (lease expired or revoked, etcd
	// unreachable past the TTL, the key taken by another writer); the
	// Registration is registering again with backoff.
	Lost
	// Closed: Close was called or the etcd client was closed; nothing runs.
	Closed
)

func (s State) String() string {
	switch s {
	case Registered:
		return "registered"
	case Lost:
		return "lost"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// errLeaseLost ends holding a lease whose keepalive stopped.
var errLeaseLost = errors.New("lease keepalive ended")

// hookPoint names a point of the registration's work where tests may stop
// it (see export_test.go). Nothing else calls the hook.
type hookPoint int

const (
	// hookRewritten: a re-registration has written the key under its new
	// lease and not yet recorded that lease; the write lock is held.
	hookRewritten hookPoint = iota + 1
	// hookUpdateWaits: Update is about to wait for the write lock.
	hookUpdateWaits
	// hookLost: the registration has turned Lost and not yet started to
	// register again.
	hookLost
)

// Registration is one instance kept registered in etcd: its key written
// under a lease that is kept alive, re-written if it is deleted out of band,
// and registered again under a new lease whenever the lease is lost, until
// Close. It is the registry's counterpart of etcd's concurrency.Session.
//
// Its methods are safe for concurrent use.
type Registration struct {
	cli  *clientv3.Client
	opts options
	key  string
	log  *slog.Logger
	m    *registryMetrics
	name string // "service/id", fixed for the Registration's life

	// writeMu serialises every write of the key together with what decides
	// it: Update's read-modify-write and its write, the re-write of a key
	// deleted out of band, and a registration from its write until its
	// lease and state are recorded. An Update therefore sees either the
	// lease before a re-registration (and fails with ErrNotRegistered,
	// leaving its value for the re-registration to write) or the lease
	// after it (and writes over it); it is never lost in between.
	writeMu sync.Mutex

	mu      sync.Mutex
	inst    Instance // the value to keep written
	lease   clientv3.LeaseID
	state   State
	err     error         // why the state last left Registered, if it did
	changed chan struct{} // closed and replaced on every state change

	cancel    context.CancelFunc
	done      chan struct{} // closed when run returns
	closeOnce sync.Once
	closeErr  error
}

// Register writes inst under a new lease and keeps it registered until Close.
//
// inst.ID defaults to inst.Addr. ctx bounds the first registration only; the
// Registration then lives until Close or until cli is closed. Register fails
// with an error wrapping ErrInvalidInstance for an instance that cannot be
// registered, and with ErrDuplicateInstance when a live registration of the
// same service and ID exists at another address.
//
// A live registration of the same service, ID and address is the
// instance's own, left by its previous run (a process restarted within the
// TTL, whose lease has not expired yet): Register takes the key over under
// its new lease instead of failing, and the old lease expires by itself
// with nothing attached. Only Register takes over; a Registration that
// lost its key to another lease never takes it back, so two live
// processes claiming one address cannot take turns.
func Register(ctx context.Context, cli *clientv3.Client, inst Instance, opts ...Option) (*Registration, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	inst = inst.withDefaults().Clone()
	if err := inst.Validate(); err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	m, err := newRegistryMetrics(o.registerer, inst.Service)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registration{
		cli:     cli,
		opts:    o,
		key:     Key(o.prefix, inst.Service, inst.ID),
		name:    inst.String(),
		m:       m,
		inst:    inst,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.log = o.logger.With("service", inst.Service, "id", inst.ID, "key", r.key)

	lease, rev, err := r.acquire(ctx, 0)
	if err != nil {
		return nil, err
	}
	m.registrations.Inc()
	r.log.Info("registry: registered", "lease", leaseHex(lease), "ttl", o.ttl)

	runCtx, cancel := context.WithCancel(cli.Ctx())
	r.cancel = cancel
	go r.run(runCtx, lease, rev)
	return r, nil
}

// Key returns the etcd key the instance is written at.
func (r *Registration) Key() string { return r.key }

// Instance returns the value the Registration keeps written.
func (r *Registration) Instance() Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inst.Clone()
}

// Lease returns the current lease. It changes after every re-registration;
// a lease once lost is never used again.
func (r *Registration) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// State returns the current state.
func (r *Registration) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Err returns why the Registration last left Registered, or nil if it
// never did. While Lost it is the latest failed attempt's error.
func (r *Registration) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// WaitForStateChange waits until the state differs from source or ctx ends,
// and reports whether it changed, as grpc.ClientConn.WaitForStateChange
// does.
func (r *Registration) WaitForStateChange(ctx context.Context, source State) bool {
	for {
		r.mu.Lock()
		state, ch := r.state, r.changed
		r.mu.Unlock()
		if state != source {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// Done returns a channel closed once the Registration has stopped: after
// Close, or after the etcd client was closed.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Update changes the registered value atomically: change is called with a
// copy of the current value, and what it leaves is validated and written,
// for example to change the weight, labels, version or state. Updates,
// re-writes and re-registrations are serialised, so concurrent Updates
// each apply to the result of the previous one and none is lost to a
// re-registration under way.
//
// Update returns nil only once the new value is visible in etcd, under the
// registration's current lease. change may not change the service or ID
// (ErrIdentityChanged) and must leave a valid Instance (ErrInvalidInstance);
// nothing is kept then. When the value cannot be written now — the
// registration is Lost, its key was deleted or taken out of band (both
// ErrNotRegistered), or etcd did not answer — Update returns the error and
// keeps the value: it is what the registration writes as soon as it holds
// the key again. change runs with the registration's write lock held: it
// must not call Update, Drain or Close.
func (r *Registration) Update(ctx context.Context, change func(*Instance)) error {
	r.hook(hookUpdateWaits)
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	cur, lease, state := r.inst.Clone(), r.lease, r.state
	r.mu.Unlock()
	if state == Closed {
		return fmt.Errorf("registry: update %q: %w", r.name, ErrClosed)
	}
	next := cur.Clone()
	change(&next)
	if next.ID == "" {
		next.ID = cur.ID
	}
	if next.Service != cur.Service || next.ID != cur.ID {
		return fmt.Errorf("registry: update %q to %q: %w", cur, next, ErrIdentityChanged)
	}
	val, err := Encode(next)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.inst = next.Clone()
	r.mu.Unlock()
	if state != Registered {
		return fmt.Errorf("registry: update %q: registration is %v; the value is written when it registers again: %w", r.name, state, ErrNotRegistered)
	}
	// Write only over our own key: if the lease no longer holds it, the
	// key is not ours to write, and the registration writes the new value
	// when it holds the key again.
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", lease)).
		Then(clientv3.OpPut(r.key, string(val), clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: update %q: %w", r.name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("registry: update %q: key not held by lease %s; the value is written when it is: %w", r.name, leaseHex(lease), ErrNotRegistered)
	}
	r.log.Info("registry: updated", "state", next.State, "weight", next.Weight, "revision", resp.Header.Revision)
	return nil
}

// Drain marks the instance draining: clients finish what they sent and send
// nothing new. It is Update setting State to InstanceDraining.
func (r *Registration) Drain(ctx context.Context) error {
	return r.Update(ctx, func(i *Instance) { i.State = InstanceDraining })
}

// Close stops keeping the instance registered and revokes its lease, so the
// key disappears at once rather than after the TTL. ctx bounds the wait
// for etcd, and so does the TTL: an unrevoked lease expires by itself
// within it. Calling Close again returns the first call's result.
func (r *Registration) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		r.writeMu.Lock() // no Update is writing
		r.mu.Lock()
		lease, was := r.lease, r.state
		r.mu.Unlock()
		r.setState(Closed, nil)
		r.writeMu.Unlock()
		if was == Closed {
			return // the client was closed; nothing to revoke with
		}
		ctx, cancel := context.WithTimeout(ctx, r.opts.ttl)
		defer cancel()
		if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.closeErr = fmt.Errorf("registry: close %q: revoke lease %s: %w", r.name, leaseHex(lease), err)
			return
		}
		r.log.Info("registry: deregistered", "lease", leaseHex(lease))
	})
	return r.closeErr
}

func (r *Registration) hook(p hookPoint) {
	if r.opts.hook != nil {
		r.opts.hook(p)
	}
}

// setState records a state change and wakes WaitForStateChange callers.
func (r *Registration) setState(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setStateLocked(s, err)
}

func (r *Registration) setStateLocked(s State, err error) {
	if err != nil {
		r.err = err
	}
	if r.state == s {
		return
	}
	if r.state == Registered {
		r.m.registered.Dec()
	}
	if s == Registered {
		r.m.registered.Inc()
	}
	r.state = s
	close(r.changed)
	r.changed = make(chan struct{})
}

// run keeps the registration alive until ctx ends: it holds the current
// lease until it is lost, then registers again under a new one.
func (r *Registration) run(ctx context.Context, lease clientv3.LeaseID, rev int64) {
	defer close(r.done)
	for {
		err := r.hold(ctx, lease, rev)
		if ctx.Err() != nil {
			if r.cli.Ctx().Err() != nil {
				r.log.Warn("registry: etcd client closed; registration stopped")
				r.setState(Closed, fmt.Errorf("registry: %q: etcd client closed", r.name))
			}
			return
		}
		r.m.leaseLosses.Inc()
		r.log.Warn("registry: registration lost; registering again", "lease", leaseHex(lease), "err", err)
		r.setState(Lost, err)
		r.hook(hookLost)
		old := lease
		lease, rev = r.reacquire(ctx, old)
		if lease == 0 {
			continue // ctx ended; the check above returns
		}
		r.m.reregistrations.Inc()
		r.log.Info("registry: registered again", "lease", leaseHex(lease), "old_lease", leaseHex(old))
		r.revokeQuietly(old)
	}
}

// isLoss reports whether err means the registration no longer holds its
// key under its lease, as opposed to a failure to reach etcd.
func isLoss(err error) bool {
	return errors.Is(err, errLeaseLost) || errors.Is(err, ErrDuplicateInstance) || errors.Is(err, rpctypes.ErrLeaseNotFound)
}

// hold keeps lease alive and the key written until the lease is lost, the
// key is taken by another writer, or ctx ends. rev is the revision at
// which the key was last known to be ours.
//
// Every loop that talks to etcd here is paced: the key's watch is opened
// again after a capped, jittered backoff that restarts only once a watch
// has stayed up for a check interval, and the key is checked with a read,
// written only when it is missing. A registration whose watch keeps
// failing (etcd unreachable, no leader, a token refused) therefore writes
// nothing and opens at most one watch stream per backoff step.
func (r *Registration) hold(ctx context.Context, lease clientv3.LeaseID, rev int64) error {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ka, err := r.cli.KeepAlive(hctx, lease)
	if err != nil {
		r.m.keepaliveFailures.Inc()
		return fmt.Errorf("keepalive: %w", err)
	}
	// The keepalive channel closing is often the only sign that the lease
	// is gone; it cancels everything hold is waiting on.
	kaDone := make(chan struct{})
	go func() {
		defer close(kaDone)
		for range ka {
		}
		cancel(errLeaseLost)
	}()
	defer func() { cancel(nil); <-kaDone }()

	failing := false // the last watch or check failed; log the next failure quietly
	for attempt := 0; ; {
		if rev == 0 {
			rev, err = r.checkKey(hctx, lease)
		}
		var healthy bool
		if err == nil {
			healthy, err = r.watchKey(hctx, lease, rev)
		}
		if hctx.Err() != nil {
			return context.Cause(hctx)
		}
		if isLoss(err) {
			return err
		}
		if healthy {
			attempt = 0
			if failing {
				r.log.Info("registry: watching the key again")
			}
			failing = false
		}
		if err != nil {
			r.m.keepaliveFailures.Inc()
			level := slog.LevelDebug
			if !failing {
				level = slog.LevelWarn
			}
			failing = true
			r.log.Log(hctx, level, "registry: cannot watch the key; checking it and watching again", "err", err)
		}
		// The watch ended, so whatever happened to the key since rev must
		// be read again before watching it.
		rev = 0
		if err := sleepCtx(hctx, r.opts.backoff.Delay(attempt)); err != nil {
			return context.Cause(hctx)
		}
		attempt++
	}
}

// watchKey follows the key from rev+1 until the watch ends. It writes the
// key again if it is deleted, and returns an error wrapping
// ErrDuplicateInstance if another lease writes it. healthy reports whether
// the watch was established and stayed up for at least a check interval;
// err is why it ended, nil when ctx ended.
func (r *Registration) watchKey(ctx context.Context, lease clientv3.LeaseID, rev int64) (healthy bool, err error) {
	wctx, cancel := context.WithCancel(etcdwatch.StreamContext(ctx))
	defer cancel()
	noAnswer := fmt.Errorf("registry: watch %s: %w within %v", r.key, etcdwatch.ErrNoAnswer, r.opts.etcdTimeout)
	// The client's Watch blocks while it opens the stream on a connection
	// that does not answer: cut it off if it takes longer than an answer
	// may.
	stuck := time.AfterFunc(r.opts.etcdTimeout, cancel)
	wch := r.cli.Watch(wctx, r.key, clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
	if !stuck.Stop() {
		return false, noAnswer
	}
	chk := etcdwatch.StartChecker(wctx, r.cli, r.opts.checkInterval, r.opts.etcdTimeout)
	defer chk.Stop()
	created := time.NewTimer(r.opts.etcdTimeout)
	defer created.Stop()
	var since time.Time // when the watch was created
	up := func() bool { return !since.IsZero() && time.Since(since) >= r.opts.checkInterval }
	for {
		select {
		case <-ctx.Done():
			return up(), nil
		case <-created.C:
			return false, noAnswer
		case err := <-chk.Failed():
			return up(), fmt.Errorf("registry: watch %s: %w", r.key, err)
		case wr, ok := <-wch:
			if !ok {
				return up(), fmt.Errorf("registry: watch %s: closed", r.key)
			}
			chk.Heard()
			if wr.Created && since.IsZero() {
				since = time.Now()
				created.Stop()
			}
			if err := wr.Err(); err != nil {
				if etcdwatch.IsAuthError(err) {
					err = fmt.Errorf("%w (watching again on a new stream, with a new token)", err)
				}
				return up(), fmt.Errorf("registry: watch %s: %w", r.key, err)
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE:
					r.log.Warn("registry: key deleted out of band; writing it again", "lease", leaseHex(lease))
					wrctx, wrcancel := context.WithTimeout(ctx, r.opts.etcdTimeout)
					_, err := r.writeIfMissing(wrctx, lease)
					wrcancel()
					if err != nil {
						return up(), err
					}
				case clientv3.LeaseID(ev.Kv.Lease) != lease:
					return up(), fmt.Errorf("registry: %q: key overwritten under lease %s: %w",
						r.name, leaseHex(clientv3.LeaseID(ev.Kv.Lease)), ErrDuplicateInstance)
				}
			}
		}
	}
}

// checkKey reads the key and writes it under lease if it is missing. It
// returns the revision to watch after, or an error wrapping
// ErrDuplicateInstance when another lease holds the key. A key that is
// there and ours costs a read, never a write.
func (r *Registration) checkKey(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), r.opts.etcdTimeout)
	defer cancel()
	resp, err := r.cli.Get(cctx, r.key)
	if err != nil {
		return 0, fmt.Errorf("registry: check key of %q: %w", r.name, err)
	}
	if len(resp.Kvs) == 0 {
		return r.writeIfMissing(cctx, lease)
	}
	if held := clientv3.LeaseID(resp.Kvs[0].Lease); held != lease {
		return 0, fmt.Errorf("registry: %q: key held under lease %s: %w", r.name, leaseHex(held), ErrDuplicateInstance)
	}
	return resp.Header.Revision, nil
}

// writeIfMissing writes the key under lease unless it exists, and checks
// that it is ours if it does. It returns the revision to watch after.
func (r *Registration) writeIfMissing(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	val, err := Encode(r.Instance())
	if err != nil {
		return 0, err
	}
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0)).
		Then(clientv3.OpPut(r.key, string(val), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(r.key)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("registry: write key of %q: %w", r.name, err)
	}
	if resp.Succeeded {
		r.m.reregistrations.Inc()
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 1 && clientv3.LeaseID(kvs[0].Lease) != lease {
		return 0, fmt.Errorf("registry: %q: key held under lease %s: %w",
			r.name, leaseHex(clientv3.LeaseID(kvs[0].Lease)), ErrDuplicateInstance)
	}
	return resp.Header.Revision, nil
}

// reacquire registers under a new lease, retrying with capped exponential
// backoff until it succeeds or ctx ends (then it returns lease 0).
func (r *Registration) reacquire(ctx context.Context, old clientv3.LeaseID) (clientv3.LeaseID, int64) {
	for attempt := 0; ; attempt++ {
		lease, rev, err := r.acquire(ctx, old)
		if err == nil {
			return lease, rev
		}
		if ctx.Err() != nil {
			return 0, 0
		}
		r.m.keepaliveFailures.Inc()
		r.setState(Lost, err)
		delay := r.opts.backoff.Delay(attempt)
		r.log.Debug("registry: register again failed", "attempt", attempt+1, "retry_in", delay, "err", err)
		if sleepCtx(ctx, delay) != nil {
			return 0, 0
		}
	}
}

// acquire grants a new lease, writes the key under it, and records the
// lease and the Registered state. prev is the lease lost before, 0 at the
// first registration.
//
// The key may be taken over only if it is absent, still held by prev (our
// own lost lease: after an etcd restart a lease can outlive its client's
// keepalive), or, at the first registration, held for the same address
// (our own previous run). The key is read before a lease is granted, so an
// attempt that must fail because another instance holds the key writes
// nothing.
func (r *Registration) acquire(ctx context.Context, prev clientv3.LeaseID) (clientv3.LeaseID, int64, error) {
	rctx, cancel := context.WithTimeout(ctx, r.opts.ttl)
	resp, err := r.cli.Get(rctx, r.key)
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("registry: register %q: read key: %w", r.name, err)
	}
	if len(resp.Kvs) == 1 {
		if err := r.mayTakeOver(resp.Kvs[0], prev); err != nil {
			return 0, 0, err
		}
	}
	// A lease is worth writing under only until its TTL runs out.
	actx, cancel := context.WithTimeout(ctx, r.opts.ttl)
	defer cancel()
	g, err := r.cli.Grant(actx, r.opts.ttlSeconds())
	if err != nil {
		return 0, 0, fmt.Errorf("registry: register %q: grant lease: %w", r.name, err)
	}
	lease := g.ID
	rev, err := r.writeNew(actx, lease, prev)
	if err != nil {
		r.revokeQuietly(lease)
		return 0, 0, err
	}
	return lease, rev, nil
}

// mayTakeOver returns nil if the key's current value kv may be replaced by
// a registration whose previous lease was prev, and an error wrapping
// ErrDuplicateInstance if not.
func (r *Registration) mayTakeOver(kv *mvccpb.KeyValue, prev clientv3.LeaseID) error {
	held := clientv3.LeaseID(kv.Lease)
	if prev != 0 {
		if held == prev {
			return nil
		}
		return fmt.Errorf("registry: instance %q already registered (lease %s): %w", r.name, leaseHex(held), ErrDuplicateInstance)
	}
	old, err := Decode(r.opts.prefix, r.key, kv.Value)
	if err != nil {
		return fmt.Errorf("registry: instance %q already registered (lease %s), with a value that cannot be decoded: %w", r.name, leaseHex(held), ErrDuplicateInstance)
	}
	if addr := r.Instance().Addr; old.Addr != addr {
		return fmt.Errorf("registry: instance %q already registered at %s (lease %s), not %s: %w", r.name, old.Addr, leaseHex(held), addr, ErrDuplicateInstance)
	}
	return nil
}

// writeNew writes the key under lease, replacing a value that mayTakeOver
// accepts, and records lease as the current one. It holds the write lock
// from the write until the lease and state are recorded.
func (r *Registration) writeNew(ctx context.Context, lease, prev clientv3.LeaseID) (int64, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	val, err := Encode(r.Instance())
	if err != nil {
		return 0, err
	}
	put := clientv3.OpPut(r.key, string(val), clientv3.WithLease(lease))
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0)).
		Then(put).
		Else(clientv3.OpGet(r.key)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("registry: register %q: %w", r.name, err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return 0, fmt.Errorf("registry: register %q: key changed during write", r.name)
		}
		if err := r.mayTakeOver(kvs[0], prev); err != nil {
			return 0, err
		}
		resp, err = r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(r.key), "=", kvs[0].ModRevision)).
			Then(put).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("registry: register %q: %w", r.name, err)
		}
		if !resp.Succeeded {
			return 0, fmt.Errorf("registry: register %q: key changed during write", r.name)
		}
		rev = resp.Header.Revision
		if prev == 0 {
			r.log.Info("registry: took over this instance's registration from before a restart", "old_lease", leaseHex(clientv3.LeaseID(kvs[0].Lease)))
		}
	}
	if prev != 0 {
		r.hook(hookRewritten)
	}
	r.mu.Lock()
	r.lease = lease
	r.setStateLocked(Registered, nil)
	r.mu.Unlock()
	return rev, nil
}

// revokeQuietly revokes a lease we no longer use, best effort: a lease we
// cannot revoke expires by itself within the TTL.
func (r *Registration) revokeQuietly(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Debug("registry: revoke unused lease", "lease", leaseHex(lease), "err", err)
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

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
