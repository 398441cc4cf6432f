package mtls

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
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

	anchors    []*x509.Certificate
	signers    []crypto.PublicKey
	pins       *pins // built from anchors and signers by newOptions
	signingKey crypto.Signer
	signature  []byte
	clients    map[string]*peerIDs // WithAllowedClients, by identity
	servers    map[string]*peerIDs // WithAllowedServers, by server name
	dropDel    bool
	// inspect: judge sealed keys without opening them when there is no
	// keyring (Inspect), instead of refusing them.
	inspect bool
	errs    []error // invalid options
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
	p, err := newPins(o.anchors, o.signers)
	if err != nil {
		o.errs = append(o.errs, err)
	}
	o.pins = p
	return o
}

// err reports the invalid options, if any.
func (o *options) err() error {
	if len(o.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid option: %w", errors.Join(o.errs...))
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
//	smartroute_mtls_reloads_total{result}          "ok" or "rejected", per validated change
//	smartroute_mtls_rejected_total{reason}         refused changes by Reason
//	smartroute_mtls_cert_expiry_seconds{identity}  seconds until the served certificate expires
//	smartroute_mtls_ca_expiry_seconds{serial,subject}  seconds until each CA of the bundle in use expires
//	smartroute_mtls_peer_refused_total{side,reason}    handshakes that refused their peer: untrusted,
//	                                                   revoked, unauthorized, no_certificate
//	smartroute_mtls_connections_closed_total{side,reason}  tracked connections closed: revoked,
//	                                                   unauthorized, not_served
//
// side is "server" (the peer is a client) or "client". Several Stores may
// share a registerer; the expiry gauges then report the earliest expiry
// of an identity name, or of a CA serial, among them.
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

// WithTrustAnchors pins the CA bundle to local root certificates: a
// Store accepts a bundle from etcd only if every CA in it chains to one
// of roots (or, with WithBundleSigners too, if the bundle carries a valid
// signature); PublishCA refuses to write one that does not. A rogue CA
// written to etcd is then refused (ReasonUnpinned), logged and counted,
// and the last good bundle stays. Read roots from a file with
// LoadTrustAnchors. Without pins, whoever can write <prefix>/ca decides
// which CAs the process trusts.
func WithTrustAnchors(roots ...*x509.Certificate) Option {
	return func(o *options) { o.anchors = append(o.anchors, roots...) }
}

// WithBundleSigners pins the CA bundle to signing keys: a Store accepts a
// bundle from etcd only if <prefix>/ca.sig holds a valid signature of it
// by one of keys (see BundleSignature), not older than the signature of
// the bundle in use (or, with WithTrustAnchors too, if its CAs chain to an
// anchor); PublishCA refuses to write a bundle without such a signature.
// Keys are Ed25519, ECDSA or RSA public keys (LoadBundleSigners).
func WithBundleSigners(keys ...crypto.PublicKey) Option {
	return func(o *options) { o.signers = append(o.signers, keys...) }
}

// WithBundleSigningKey makes PublishCA sign the bundle with key
// (SignBundle) and write the signature to <prefix>/ca.sig in the same
// transaction. Prefer signing offline (lbprobe certs sign) and passing
// the signature with WithBundleSignature.
func WithBundleSigningKey(key crypto.Signer) Option {
	return func(o *options) { o.signingKey = key }
}

// WithBundleSignature makes PublishCA write sig (made by SignBundle, with
// the same prefix) to <prefix>/ca.sig in the same transaction as the
// bundle.
func WithBundleSignature(sig []byte) Option {
	return func(o *options) { o.signature = sig }
}

// WithAllowedClients restricts the clients that a server presenting
// identity accepts to those whose certificate holds one of ids, on top of
// chaining to the CA bundle and not being revoked. An ID is
// "dns:<name>", "uri:<uri>", a SPIFFE ID "spiffe://<trust
// domain>/<path>", or "*" for any. For that identity, the option takes
// precedence over a policy in etcd (<prefix>/<name>/clients, see
// ClientPolicy). A refused client's handshake fails; the reason is logged
// and counted (smartroute_mtls_peer_refused_total{reason="unauthorized"}),
// never sent to the client.
func WithAllowedClients(identity string, ids ...string) Option {
	return func(o *options) {
		p, err := parsePeerIDs(ids)
		if err != nil {
			o.errs = append(o.errs, fmt.Errorf("WithAllowedClients(%q): %w", identity, err))
			return
		}
		if o.clients == nil {
			o.clients = map[string]*peerIDs{}
		}
		o.clients[identity] = p
	}
}

// WithAllowedServers makes the client configs that verify serverName
// (ClientConfig's serverName, or the name of the connection when it is
// "") accept only a server whose certificate holds one of ids (forms as
// WithAllowedClients), so that a client requires the server to be the
// service it meant to call. The IDs replace the host name check for that
// name: a server with only a SPIFFE ID (no DNS name) is accepted when its
// ID is listed. The chain, key usage and revocation are checked as
// always.
func WithAllowedServers(serverName string, ids ...string) Option {
	return func(o *options) {
		p, err := parsePeerIDs(ids)
		if err != nil {
			o.errs = append(o.errs, fmt.Errorf("WithAllowedServers(%q): %w", serverName, err))
			return
		}
		if o.servers == nil {
			o.servers = map[string]*peerIDs{}
		}
		o.servers[serverName] = p
	}
}

// WithDropDeleted makes a Store stop serving an identity whose certificate
// and key are both deleted from etcd: new handshakes no longer present
// it, and the connections that presented it and were accepted through
// NewListener are closed. By default a deleted identity stays in use
// (stale beats none: a mistaken delete does not take a service down) and
// the deletion is refused with ReasonDeleted. Deleting an identity does
// not stop its certificate from being trusted by peers: revoke it for
// that (Revoke).
func WithDropDeleted(drop bool) Option {
	return func(o *options) { o.dropDel = drop }
}

// wants reports whether the options select identity name.
func (o *options) wants(name string) bool { return o.identities == nil || o.identities[name] }
