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

	// writeMu serialises writes of the key so that a re-registration
	// never overwrites a newer value written by Update.
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
// same service and ID exists.
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
	r.lease, r.state = lease, Registered
	m.registrations.Inc()
	m.registered.Inc()
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

// Update replaces the registered value, for example to change the weight,
// labels, version or state. inst must name the same service and ID (an
// empty ID means the current one); otherwise Update fails with
// ErrIdentityChanged.
//
// The new value is kept even when writing it fails, or while the
// registration is Lost: it is what the next re-registration writes. Update
// returns the etcd error in that case so the caller knows the value is not
// yet visible.
func (r *Registration) Update(ctx context.Context, inst Instance) error {
	r.mu.Lock()
	cur := r.inst
	r.mu.Unlock()
	if inst.ID == "" {
		inst.ID = cur.ID
	}
	if inst.Service != cur.Service || inst.ID != cur.ID {
		return fmt.Errorf("registry: update %q to %q: %w", cur, inst, ErrIdentityChanged)
	}
	if err := inst.Validate(); err != nil {
		return err
	}
	inst = inst.Clone()

	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	if r.state == Closed {
		r.mu.Unlock()
		return fmt.Errorf("registry: update %q: %w", cur, ErrClosed)
	}
	r.inst = inst
	lease, state := r.lease, r.state
	r.mu.Unlock()
	if state != Registered {
		return nil // written by the re-registration under way
	}
	val, err := Encode(inst)
	if err != nil {
		return err
	}
	// Write only over our own key: if the lease is gone the key is not
	// ours to write, and the re-registration will write the new value.
	_, err = r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", lease)).
		Then(clientv3.OpPut(r.key, string(val), clientv3.WithLease(lease))).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: update %q: %w", inst, err)
	}
	r.log.Info("registry: updated", "state", inst.State, "weight", inst.Weight)
	return nil
}

// Drain marks the instance draining: clients finish what they sent and send
// nothing new. It is Update with State set to InstanceDraining.
func (r *Registration) Drain(ctx context.Context) error {
	inst := r.Instance()
	inst.State = InstanceDraining
	return r.Update(ctx, inst)
}

// Close stops keeping the instance registered and revokes its lease, so the
// key disappears at once rather than after the TTL. It waits at most the
// TTL for etcd. Calling Close again returns the first call's result.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		r.mu.Lock()
		lease, was := r.lease, r.state
		r.mu.Unlock()
		r.setState(Closed, nil)
		if was == Closed {
			return // the client was closed; nothing to revoke with
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.ttl)
		defer cancel()
		if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.closeErr = fmt.Errorf("registry: close %q: revoke lease %s: %w", r.name, leaseHex(lease), err)
			return
		}
		r.log.Info("registry: deregistered", "lease", leaseHex(lease))
	})
	return r.closeErr
}

// setState records a state change and wakes WaitForStateChange callers.
func (r *Registration) setState(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
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
		old := lease
		lease, rev = r.reacquire(ctx, old)
		if lease == 0 {
			continue // ctx ended; the check above returns
		}
		r.mu.Lock()
		r.lease = lease
		r.mu.Unlock()
		r.setState(Registered, nil)
		r.m.reregistrations.Inc()
		r.log.Info("registry: registered again", "lease", leaseHex(lease), "old_lease", leaseHex(old))
		r.revokeQuietly(old)
	}
}

// hold keeps lease alive and the key written until the lease is lost, the
// key is taken by another writer, or ctx ends. rev is the revision of our
// last write of the key.
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

	for {
		var wopts []clientv3.OpOption
		if rev > 0 {
			wopts = append(wopts, clientv3.WithRev(rev+1))
		}
		wch := r.cli.Watch(hctx, r.key, wopts...)
		rev, err = r.watchKey(hctx, wch, lease, rev)
		if err == nil && hctx.Err() == nil {
			// The watch ended (compaction, a member restart, a
			// cancelled stream): check the key, then watch again.
			rev, err = r.ensureKey(hctx, lease)
		}
		if hctx.Err() != nil {
			return context.Cause(hctx)
		}
		if err != nil {
			return err
		}
	}
}

// watchKey follows the key until it needs attention. It returns the last
// revision seen and nil when the watch ended and must be restarted, or an
// error when the registration is lost.
func (r *Registration) watchKey(ctx context.Context, wch clientv3.WatchChan, lease clientv3.LeaseID, rev int64) (int64, error) {
	for {
		select {
		case <-ctx.Done():
			return rev, nil
		case wr, ok := <-wch:
			if !ok || wr.Canceled || wr.Err() != nil {
				return rev, nil
			}
			for _, ev := range wr.Events {
				rev = ev.Kv.ModRevision
				switch {
				case ev.Type == mvccpb.DELETE:
					r.log.Warn("registry: key deleted out of band; writing it again", "lease", leaseHex(lease))
					nrev, err := r.ensureKey(ctx, lease)
					if err != nil {
						return rev, err
					}
					rev = nrev
				case clientv3.LeaseID(ev.Kv.Lease) != lease:
					return rev, fmt.Errorf("registry: %q: key overwritten under lease %s: %w",
						r.name, leaseHex(clientv3.LeaseID(ev.Kv.Lease)), ErrDuplicateInstance)
				}
			}
		}
	}
}

// ensureKey writes the key under lease if it is missing and checks that it
// is ours if it exists. It returns the revision to watch from. While etcd
// does not answer it retries; ctx ends when the lease is lost.
func (r *Registration) ensureKey(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	for {
		rev, err := r.tryEnsureKey(ctx, lease)
		if err == nil || ctx.Err() != nil || errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, ErrDuplicateInstance) {
			return rev, err
		}
		r.m.keepaliveFailures.Inc()
		r.log.Warn("registry: cannot check key; retrying", "err", err)
		r.pause(ctx)
	}
}

func (r *Registration) tryEnsureKey(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
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
		return 0, fmt.Errorf("registry: check key of %q: %w", r.name, err)
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

// pause waits one backoff step so that a failing etcd is not hammered.
func (r *Registration) pause(ctx context.Context) {
	t := time.NewTimer(r.opts.backoff.Delay(0))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
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
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, 0
		case <-t.C:
		}
	}
}

// acquire grants a new lease and writes the key under it. The key may be
// taken over only if it is absent or still held by prev, our own lost lease
// (after an etcd restart a lease can outlive its client's keepalive).
func (r *Registration) acquire(ctx context.Context, prev clientv3.LeaseID) (clientv3.LeaseID, int64, error) {
	actx, cancel := context.WithTimeout(ctx, r.opts.ttl)
	defer cancel()
	name := r.Instance().String()
	g, err := r.cli.Grant(actx, r.opts.ttlSeconds())
	if err != nil {
		return 0, 0, fmt.Errorf("registry: register %q: grant lease: %w", name, err)
	}
	lease := g.ID
	rev, err := r.writeNew(actx, lease, prev)
	if err != nil {
		r.revokeQuietly(lease)
		return 0, 0, err
	}
	return lease, rev, nil
}

func (r *Registration) writeNew(ctx context.Context, lease, prev clientv3.LeaseID) (int64, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	inst := r.Instance()
	val, err := Encode(inst)
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
		return 0, fmt.Errorf("registry: register %q: %w", inst, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return 0, fmt.Errorf("registry: register %q: key changed during write", inst)
	}
	held := clientv3.LeaseID(kvs[0].Lease)
	if prev == 0 || held != prev {
		return 0, fmt.Errorf("registry: instance %q already registered (lease %s): %w", inst, leaseHex(held), ErrDuplicateInstance)
	}
	resp, err = r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(r.key), "=", kvs[0].ModRevision)).
		Then(put).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("registry: register %q: %w", inst, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("registry: register %q: key changed during write", inst)
	}
	return resp.Header.Revision, nil
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

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
