package mtls

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultEtcdTimeout bounds each list (Get) of the prefix after the first
// (whose bound is the context given to NewStore) and each write of
// Publish, PublishCA and Reseal when their context has no deadline. A
// healthy etcd answers in milliseconds; 5 s rides out a leader election.
const DefaultEtcdTimeout = 5 * time.Second

// Option configures a Store, Publish, PublishCA or Reseal. Options that do
// not apply to a call are ignored by it, so one list can be shared.
type Option func(*options)

type options struct {
	prefix      string
	keyring     *Keyring
	allowPlain  bool
	logger      *slog.Logger
	registerer  prometheus.Registerer
	now         func() time.Time
	identities  map[string]bool // nil: every identity
	etcdTimeout time.Duration
}

func newOptions(opts []Option) options {
	o := options{prefix: DefaultPrefix, etcdTimeout: DefaultEtcdTimeout}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	o.prefix = normPrefix(o.prefix)
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.etcdTimeout <= 0 {
		o.etcdTimeout = DefaultEtcdTimeout
	}
	return o
}

// WithPrefix sets the etcd prefix of the certificate key schema (default
// DefaultPrefix, "/certs"). A trailing '/' is ignored.
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithKeyring sets the key-encryption keys that sealed private keys are
// opened with (Store, Reseal) and sealed with (Reseal; Publish takes its
// keyring as an argument). Without a keyring a Store refuses every sealed
// key with ReasonUnseal.
func WithKeyring(kr *Keyring) Option {
	return func(o *options) { o.keyring = kr }
}

// WithAllowPlaintextKeys lets a Store accept private keys stored as plain
// PEM, and lets Publish write one when it is given a nil Keyring. Off by
// default: a plain key is refused with ReasonPlainKey. Meant for
// development and migration; legacy encrypted PEM (RFC 1423) is refused
// either way.
func WithAllowPlaintextKeys(allow bool) Option {
	return func(o *options) { o.allowPlain = allow }
}

// WithLogger sets the logger (default: discard). Logs name etcd keys,
// revisions, reasons, serial numbers and expiry times, never key material.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRegisterer registers the Store's metrics on r (default: none):
//
//	smartroute_mtls_reloads_total{result}      "ok" or "rejected", per validated change
//	smartroute_mtls_rejected_total{reason}     refused changes by Reason
//	smartroute_mtls_cert_expiry_seconds{identity}  seconds until the served certificate expires
//
// Several Stores may share a registerer; the expiry gauge then reports the
// earliest expiry of an identity name among them.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) { o.registerer = r }
}

// WithClock sets the clock that validity windows are checked against, in
// the Store's validation, in Publish and in the handshakes of the
// tls.Configs the Store builds (default time.Now). For tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithEtcdTimeout bounds each etcd request the Store makes after its first
// list, and each request of Publish, PublishCA and Reseal when their
// context has no deadline (default DefaultEtcdTimeout).
func WithEtcdTimeout(d time.Duration) Option {
	return func(o *options) { o.etcdTimeout = d }
}

// WithIdentities makes a Store load only the named identities (and the CA
// bundle); other identities under the prefix are ignored: their keys are
// not opened and a new CA bundle is not checked against them. By default a
// Store loads every identity under the prefix. A process that only
// presents its own identity and verifies peers needs only that one.
func WithIdentities(names ...string) Option {
	return func(o *options) {
		o.identities = make(map[string]bool, len(names))
		for _, n := range names {
			o.identities[n] = true
		}
	}
}

// wants reports whether the options select identity name.
func (o *options) wants(name string) bool { return o.identities == nil || o.identities[name] }
