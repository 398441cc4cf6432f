package mtls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// publishAttempts bounds how often Publish and PublishCA retry when the
// material they validated against changed before their write.
const publishAttempts = 5

// Publish validates a certificate chain and its private key (PEM) and
// writes them for identity name: the key sealed with kr (Keyring.Seal, the
// etcd key as additional data), both in one etcd transaction, so a Store
// never pairs a new certificate with an old key. It returns the revision
// of the write, which Store.WaitRevision accepts.
//
// Validation is the Store's: the key parses and matches the leaf, the
// leaf is inside its validity window, the chain verifies against the CA
// bundle in etcd and no certificate of it is on the revocation list. The
// write happens only if that bundle and that list are still the ones in
// etcd; it is retried otherwise. A refused pair is reported as a
// *ValidationError (Key is ""), with ErrNoCABundle wrapped when etcd holds
// no bundle.
//
// kr may be nil only with WithAllowPlaintextKeys(true); the key is then
// written as plain PEM. Options: WithPrefix, WithAllowPlaintextKeys,
// WithClock, WithEtcdTimeout.
func Publish(ctx context.Context, cli *clientv3.Client, kr *Keyring, name string, certPEM, keyPEM []byte, opts ...Option) (int64, error) {
	o := newOptions(opts)
	if err := ValidateName(name); err != nil {
		return 0, err
	}
	if kr == nil && !o.allowPlain {
		return 0, fmt.Errorf("mtls: publish %q: %w (or allow plain keys with WithAllowPlaintextKeys)", name, ErrNoKeyring)
	}
	cert, verr := parsePair(certPEM, keyPEM)
	if verr != nil {
		return 0, verr
	}
	if verr := checkWindow(cert.Leaf, o.now()); verr != nil {
		return 0, verr
	}
	keyKey := KeyKey(o.prefix, name)
	value := keyPEM
	if kr != nil {
		var err error
		if value, err = kr.Seal(keyKey, keyPEM); err != nil {
			return 0, fmt.Errorf("mtls: publish %q: %w", name, err)
		}
	}
	ctx, cancel := withDefaultTimeout(ctx, o.etcdTimeout)
	defer cancel()
	caKey, revKey := CAKey(o.prefix), RevokedKey(o.prefix)
	for range publishAttempts {
		// The bundle and the revocation list at one revision.
		read, err := cli.Txn(ctx).Then(clientv3.OpGet(caKey), clientv3.OpGet(revKey)).Commit()
		if err != nil {
			return 0, fmt.Errorf("mtls: publish %q: read %s: %w", name, caKey, err)
		}
		var ca *caBundle
		caRev, revRev := int64(0), int64(0)
		if kvs := read.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			caRev = kvs[0].ModRevision
			if ca, verr = parseBundle(kvs[0].Value, o.now()); verr != nil {
				return 0, fmt.Errorf("mtls: publish %q: the CA bundle in etcd is not usable: %w", name, verr.at(caKey, caRev))
			}
		}
		if verr := verifyChain(cert, ca, o.now()); verr != nil {
			return 0, verr
		}
		if kvs := read.Responses[1].GetResponseRange().Kvs; len(kvs) == 1 {
			revRev = kvs[0].ModRevision
			rl, verr := parseRevocations(kvs[0].Value)
			if verr != nil {
				return 0, fmt.Errorf("mtls: publish %q: the revocation list in etcd is not usable: %w", name, verr.at(revKey, revRev))
			}
			if chain, err := decodeCertificates(certPEM); err == nil {
				if r, c := rl.match(chain, ca); r != nil {
					return 0, reject(ReasonRevoked, "%w", revokedError(c, r))
				}
			}
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(caKey), "=", caRev), clientv3.Compare(clientv3.ModRevision(revKey), "=", revRev)).
			Then(clientv3.OpPut(CertKey(o.prefix, name), string(certPEM)), clientv3.OpPut(keyKey, string(value))).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("mtls: publish %q: %w", name, err)
		}
		if txn.Succeeded {
			return txn.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("mtls: publish %q: the CA bundle or the revocation list changed %d times during the write: %w", name, publishAttempts, ErrConflict)
}

// PublishCA validates a CA bundle (PEM CA certificates, at least one
// inside its validity window) and writes it to the CA key. It refuses,
// with an error wrapping ErrOrphanedIdentity, a bundle that no longer
// signs an identity in etcd that the bundle in etcd signs: rotate those
// identities first (see the package documentation on rotating the CA by
// overlap). The write happens only if nothing under the prefix changed
// since the check; it is retried otherwise. It returns the revision of the
// write.
//
// With WithBundleSigningKey or WithBundleSignature, the bundle's
// signature is written to <prefix>/ca.sig in the same transaction;
// otherwise a signature left there is deleted with it (it would be of
// another bundle). With WithTrustAnchors or WithBundleSigners, the bundle
// (and its signature) must pass them as a pinned Store would judge it, or
// nothing is written and the error wraps ErrUnpinned.
//
// Options: WithPrefix, WithClock, WithEtcdTimeout, WithBundleSigningKey,
// WithBundleSignature, WithTrustAnchors, WithBundleSigners.
func PublishCA(ctx context.Context, cli *clientv3.Client, bundlePEM []byte, opts ...Option) (int64, error) {
	o := newOptions(opts)
	if err := o.err(); err != nil {
		return 0, fmt.Errorf("mtls: publish CA bundle: %w", err)
	}
	now := o.now()
	next, verr := parseBundle(bundlePEM, now)
	if verr != nil {
		return 0, verr
	}
	caKey, sigKey := CAKey(o.prefix), CASignatureKey(o.prefix)
	sig := o.signature
	if o.signingKey != nil {
		var err error
		if sig, err = SignBundle(o.signingKey, bundlePEM, opts...); err != nil {
			return 0, err
		}
	}
	if o.pins.pinned() {
		if _, verr := o.pins.check(caKey, next, sig, now); verr != nil {
			return 0, verr
		}
	}
	sigOp := clientv3.OpDelete(sigKey)
	if sig != nil {
		sigOp = clientv3.OpPut(sigKey, string(sig))
	}
	ctx, cancel := withDefaultTimeout(ctx, o.etcdTimeout)
	defer cancel()
	for range publishAttempts {
		resp, err := cli.Get(ctx, under(o.prefix), clientv3.WithPrefix())
		if err != nil {
			return 0, fmt.Errorf("mtls: publish CA bundle: read %s/: %w", o.prefix, err)
		}
		var cur *caBundle
		for _, kv := range resp.Kvs {
			if string(kv.Key) == caKey {
				cur, _ = parseBundle(kv.Value, now)
			}
		}
		var orphans []string
		for _, kv := range resp.Kvs {
			kind, name := parseKey(o.prefix, string(kv.Key))
			if kind != kindCert || cur == nil {
				continue
			}
			chain, err := decodeCertificates(kv.Value)
			if err != nil {
				continue // refused by Stores anyway
			}
			c := pairless(chain)
			if verifyChain(c, cur, now) == nil && verifyChain(c, next, now) != nil {
				orphans = append(orphans, name)
			}
		}
		if len(orphans) > 0 {
			return 0, reject(ReasonOrphaned, "the bundle does not sign identities in use: %s (rotate their certificates first): %w",
				strings.Join(orphans, ", "), ErrOrphanedIdentity)
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(under(o.prefix)), "<", resp.Header.Revision+1).WithPrefix()).
			Then(clientv3.OpPut(caKey, string(bundlePEM)), sigOp).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("mtls: publish CA bundle: %w", err)
		}
		if txn.Succeeded {
			return txn.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("mtls: publish CA bundle: %s/ changed %d times during the write: %w", o.prefix, publishAttempts, ErrConflict)
}

// Reseal seals again, with kr's primary key-encryption key, every private
// key under the prefix that is sealed with another key or stored as plain
// PEM. It is step 3 of rotating a KEK (see Keyring). Each key is rewritten
// only if it has not changed since it was read. It returns how many keys
// it rewrote; keys it cannot open are skipped and reported in the error
// (errors.Join), the others are still resealed.
//
// Options: WithPrefix, WithEtcdTimeout.
func Reseal(ctx context.Context, cli *clientv3.Client, kr *Keyring, opts ...Option) (int, error) {
	if kr == nil {
		return 0, fmt.Errorf("mtls: reseal: %w", ErrNoKeyring)
	}
	o := newOptions(opts)
	ctx, cancel := withDefaultTimeout(ctx, o.etcdTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, under(o.prefix), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("mtls: reseal: read %s/: %w", o.prefix, err)
	}
	var errs []error
	n := 0
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		if kind, _ := parseKey(o.prefix, key); kind != kindKey {
			continue
		}
		var keyPEM []byte
		switch id, sealed := SealedBy(kv.Value); {
		case sealed && id == kr.Primary():
			continue
		case sealed:
			if keyPEM, err = kr.Open(key, kv.Value); err != nil {
				errs = append(errs, err)
				continue
			}
		case looksLikePEMKey(kv.Value):
			if _, verr := parsePrivateKey(kv.Value); verr != nil {
				errs = append(errs, verr.at(key, kv.ModRevision))
				continue
			}
			keyPEM = bytes.Clone(kv.Value)
		default:
			continue // not a key Stores accept; leave it alone
		}
		value, err := kr.Seal(key, keyPEM)
		clear(keyPEM)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(value))).
			Commit()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("mtls: reseal %s: %w", key, err))
		case !txn.Succeeded:
			errs = append(errs, fmt.Errorf("mtls: reseal %s: changed while resealing: %w", key, ErrConflict))
		default:
			n++
		}
	}
	return n, errors.Join(errs...)
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
