package mtls

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Store holds the certificate material of the etcd key schema under a
// prefix (default "/certs"): the CA bundle and the identities, each
// validated before use, and keeps it current by watching etcd.
//
// Every change read from etcd is validated before it is swapped in
// atomically; a refused change is logged (never with key material),
// counted, and the last good material stays in use (see Reason). While
// etcd is unreachable the last good material stays in use and the Store
// lists the prefix again, with backoff, until etcd answers.
//
// The tls.Configs built by ServerConfig and ClientConfig read the current
// material at every handshake, so they serve through every rotation.
//
// A Store is safe for concurrent use. It owns one goroutine, stopped by
// Close.
type Store struct {
	cli    *clientv3.Client
	o      options
	log    *slog.Logger
	m      *storeMetrics
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch goroutine has returned
	// expiryDone is closed when the expiry watcher has returned.
	expiryDone chan struct{}

	cur      atomic.Pointer[state]
	rev      atomic.Int64 // etcd revision processed
	changed  signal       // fired when cur changes
	progress signal       // fired when rev advances or the loop ends

	mu       sync.Mutex
	rejected map[string]*ValidationError // by identity name; "" for the CA bundle
	loopErr  error                       // why the watch goroutine ended, if it did
	expired  map[certKey]bool            // certificates whose expiry in use was logged

	closeOnce sync.Once
	loop      *watchLoop // owned by the watch goroutine after NewStore

	conns   *connTracker // connections from NewListener and DialTLS
	peerLog peerLog      // when refused peers were last logged
}

// NewStore lists the prefix through cli, validates what it finds, and
// starts watching for changes. ctx bounds the first list only; the Store
// lives until Close. It fails if etcd cannot be listed before ctx ends, or
// if an option is invalid. Values refused by validation do not make it fail:
// they are logged and counted, and the identities they belong to are not
// served until a good update arrives (use Ready to wait for them).
//
// The caller keeps ownership of cli and must close it after the Store.
// Options: WithPrefix, WithKeyring, WithAllowPlaintextKeys, WithIdentities,
// WithTrustAnchors, WithBundleSigners, WithAllowedClients,
// WithAllowedServers, WithDropDeleted, WithLogger, WithRegisterer,
// WithClock, WithEtcdTimeout. Without WithTrustAnchors or
// WithBundleSigners, NewStore logs a warning: the CA bundle is then
// whatever etcd holds.
func NewStore(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Store, error) {
	if cli == nil {
		return nil, errors.New("mtls: NewStore: nil etcd client")
	}
	o := newOptions(opts)
	if err := o.err(); err != nil {
		return nil, fmt.Errorf("mtls: NewStore: %w", err)
	}
	m, err := newStoreMetrics(o.registerer)
	if err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	s := newStore(cli, o, m)
	if !o.pins.pinned() {
		s.log.Warn("mtls: no pinned trust anchors: whoever can write " + CAKey(o.prefix) + " decides which CAs this process trusts (see WithTrustAnchors, WithBundleSigners)")
	}
	rev, err := s.loop.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("mtls: NewStore: list %s/: %w", o.prefix, err)
	}
	m.addStore(s)
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.loop.run(lctx, rev)
	go s.watchExpiry(lctx)
	return s, nil
}

// newStore returns a Store that has read nothing yet and runs nothing.
func newStore(cli *clientv3.Client, o options, m *storeMetrics) *Store {
	s := &Store{
		cli:        cli,
		o:          o,
		log:        o.logger.With("prefix", under(o.prefix)),
		m:          m,
		done:       make(chan struct{}),
		expiryDone: make(chan struct{}),
		rejected:   make(map[string]*ValidationError),
		expired:    make(map[certKey]bool),
	}
	s.cur.Store(&state{ids: map[string]*identity{}})
	s.conns = newConnTracker(s)
	s.loop = newWatchLoop(s)
	return s
}

// Close stops the watch. The material loaded stays readable and the
// tls.Configs keep serving it. Close is idempotent and returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		<-s.expiryDone
		s.m.removeStore(s)
	})
	return nil
}

// Prefix returns the etcd prefix the Store watches, without trailing '/'.
func (s *Store) Prefix() string { return s.o.prefix }

// Revision returns the etcd revision up to which the Store has read and
// validated the prefix (whether it accepted or refused what it read).
func (s *Store) Revision() int64 { return s.rev.Load() }

// Changed returns a channel that is closed at the next change of the
// material in use: a CA bundle or an identity accepted. Read the new
// state, then call Changed again:
//
//	for {
//		ch := s.Changed()
//		use(s.Identities())
//		select {
//		case <-ch:
//		case <-ctx.Done():
//			return
//		}
//	}
func (s *Store) Changed() <-chan struct{} { return s.changed.wait() }

// Certificate returns the certificate and key in use for identity name,
// for handshakes (a tls.Config's GetCertificate or GetClientCertificate).
// It is shared with the handshakes: do not modify it. Its PrivateKey is a
// crypto.Signer that prints and marshals as "[redacted]"; to show an
// identity, use Identities, whose CertificateInfo holds no key at all. The
// error wraps ErrNoIdentity when no good material is loaded for name, with
// the reason of the last refused update if there was one.
func (s *Store) Certificate(name string) (*tls.Certificate, error) {
	if id := s.cur.Load().ids[name]; id != nil {
		return id.cert, nil
	}
	return nil, s.noIdentity(name)
}

func (s *Store) noIdentity(name string) error {
	s.mu.Lock()
	rej := s.rejected[name]
	s.mu.Unlock()
	if rej != nil {
		return fmt.Errorf("mtls: identity %q: %w (last update refused: %w)", name, ErrNoIdentity, rej)
	}
	return fmt.Errorf("mtls: identity %q: %w", name, ErrNoIdentity)
}

// CAPool returns a copy of the CA bundle in use as a pool, or nil when no
// good bundle is loaded.
func (s *Store) CAPool() *x509.CertPool {
	if ca := s.cur.Load().ca; ca != nil {
		return ca.pool.Clone()
	}
	return nil
}

// CACertificates returns the certificates of the CA bundle in use, in
// bundle order, or nil when no good bundle is loaded. They are shared: do
// not modify them.
func (s *Store) CACertificates() []*x509.Certificate {
	if ca := s.cur.Load().ca; ca != nil {
		return slices.Clone(ca.certs)
	}
	return nil
}

// Identities returns every identity the Store serves or has refused an
// update of, sorted by name. The result holds no key material: it is safe
// to marshal (JSON) and log.
func (s *Store) Identities() []Identity {
	st := s.cur.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Identity, 0, len(st.ids)+len(s.rejected))
	for _, n := range st.names {
		out = append(out, describeIdentity(st.ids[n], s.rejected[n]))
	}
	for n, rej := range s.rejected {
		if isIdentitySlot(n) && st.ids[n] == nil {
			out = append(out, Identity{Name: n, Rejected: rej})
		}
	}
	slices.SortFunc(out, func(a, b Identity) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// isIdentitySlot reports whether a key of Store.rejected names an
// identity (not the CA bundle, the revocation list or a client policy).
func isIdentitySlot(n string) bool { return n != "" && !strings.Contains(n, "/") }

// describeIdentity is the public view of an identity in use.
func describeIdentity(id *identity, rej *ValidationError) Identity {
	info := DescribeCertificate(id.chain[0])
	out := Identity{Name: id.name, Certificate: &info, Revision: id.crtRev, KEKID: id.kekID, KeyChecked: id.keyChecked, Rejected: rej}
	for _, c := range id.chain[1:] {
		out.Chain = append(out.Chain, DescribeCertificate(c))
	}
	return out
}

// Revocations returns the revocation list in use, in list order (nil
// when none is loaded).
func (s *Store) Revocations() []Revocation {
	if rl := s.cur.Load().revoked; rl != nil {
		return slices.Clone(rl.entries)
	}
	return nil
}

// RevocationsRejected returns the last update of the revocation list that
// was refused since the list in use was loaded, or nil.
func (s *Store) RevocationsRejected() *ValidationError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected[slotRevoked]
}

// ClientPolicyRejected returns the last update of identity name's client
// policy (<prefix>/<name>/clients) that was refused, or nil.
func (s *Store) ClientPolicyRejected(name string) *ValidationError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected[slotClients(name)]
}

// CARejected returns the last update of the CA bundle that was refused
// since the bundle in use was loaded, or nil.
func (s *Store) CARejected() *ValidationError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected[""]
}

// Ready waits until a CA bundle and every named identity have good
// material. When ctx ends first, its error wraps ErrNotReady and ctx's
// error and says what is missing and why; on a closed Store it wraps
// ErrClosed.
func (s *Store) Ready(ctx context.Context, names ...string) error {
	for {
		ch := s.changed.wait()
		missing := s.missing(names)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-s.done:
			if len(s.missing(names)) == 0 {
				return nil
			}
			return fmt.Errorf("mtls: store not ready: %s: %w", s.describeMissing(missing), s.ended())
		case <-ctx.Done():
			return fmt.Errorf("mtls: %w: %s: %w", ErrNotReady, s.describeMissing(missing), ctx.Err())
		}
	}
}

// missing lists what Ready still waits for: "" for the CA bundle, then
// identity names.
func (s *Store) missing(names []string) []string {
	st := s.cur.Load()
	var out []string
	if st.ca == nil {
		out = append(out, "")
	}
	for _, n := range names {
		if st.ids[n] == nil {
			out = append(out, n)
		}
	}
	return out
}

func (s *Store) describeMissing(missing []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for i, n := range missing {
		if i > 0 {
			b = append(b, "; "...)
		}
		what := fmt.Sprintf("identity %q", n)
		if n == "" {
			what = "CA bundle " + CAKey(s.o.prefix)
		}
		b = append(b, what...)
		if rej := s.rejected[n]; rej != nil {
			b = append(b, fmt.Sprintf(" (refused: %v)", rej)...)
		} else {
			b = append(b, " (not in etcd)"...)
		}
	}
	return string(b)
}

// WaitRevision waits until the Store has read and validated the prefix up
// to etcd revision rev, such as the revision Publish or PublishCA returns.
// rev must be a revision that changed a key under the prefix (or one the
// Store has already passed); the Store learns of revisions from its watch.
func (s *Store) WaitRevision(ctx context.Context, rev int64) error {
	for {
		ch := s.progress.wait()
		if s.rev.Load() >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-s.done:
			if s.rev.Load() >= rev {
				return nil
			}
			return fmt.Errorf("mtls: wait for revision %d: %w", rev, s.ended())
		case <-ctx.Done():
			return fmt.Errorf("mtls: wait for revision %d (at %d): %w", rev, s.rev.Load(), ctx.Err())
		}
	}
}

// ended returns why the watch goroutine ended.
func (s *Store) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loopErr != nil {
		return s.loopErr
	}
	return ErrClosed
}
