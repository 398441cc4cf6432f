package mtls

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Slots of Store.rejected and watchLoop.reported other than identity
// names: "" for the CA bundle, and names that hold a '/', which identity
// names cannot.
const slotRevoked = "/revoked"

func slotClients(name string) string { return name + "/" + clientsFile }

// outcome is what validating one batch of changes decided.
type outcome struct {
	ids      map[string]*identity // the good identities after the batch
	accepted []string             // names whose material changed
	dropped  []string             // names no longer served (WithDropDeleted, revoked)
	refused  []refused
}

type refused struct {
	name string // "" for the CA bundle, or a slot
	r    refusal
	err  *ValidationError
}

// changes is what one batch of etcd values touched.
type changes struct {
	ca      bool            // the bundle or its signature
	revoked bool            // the revocation list
	clients map[string]bool // client policies, by identity
	ids     map[string]bool // identities
}

func (c changes) any() bool {
	return c.ca || c.revoked || len(c.clients) > 0 || len(c.ids) > 0
}

// reconcile validates what changed in the raw values and swaps in the
// resulting state if the material in use changed.
//
// A new CA bundle is accepted only if it passes the pins (if any) and
// every identity in use that is still present in etcd chains to it:
// removing a CA that still signs an identity in use would break
// handshakes, so the whole bundle is refused with ReasonOrphaned and the
// bundle in use stays until the CA key is written again (it is not
// retried when the identities change: the bundle then would switch in
// every process at the instant the last leaf does, which is the race the
// overlap procedure avoids). When a bundle or revocation list is
// accepted, identities refused earlier are validated again against it (a
// leaf from a new CA written before the CA was added becomes good once it
// is), and identities in use that the new list revokes are no longer
// served.
//
// When the revocation list, a client policy or the identities served
// change, the connections tracked by NewListener and DialTLSContext are
// checked again and those no longer allowed are closed.
func (l *watchLoop) reconcile(ch changes) {
	s := l.s
	now := s.o.now()
	cur := s.cur.Load()
	var pre []refused

	ca, caChanged := cur.ca, false
	if ch.ca {
		var rs []refused
		ca, caChanged, rs = l.reconcileCA(cur, now)
		pre = append(pre, rs...)
	}
	rl, revChanged, revRefusals := l.reconcileRevoked(cur, ch.revoked)
	pre = append(pre, revRefusals...)
	clients, clientsChanged, polRefusals := l.reconcileClients(cur, ch.clients)
	pre = append(pre, polRefusals...)

	// The identities to validate: those that changed and, when the trust
	// changed, those not in use as they are in etcd (refused earlier, or
	// changed); those in use are checked against a new revocation list
	// (or a new bundle's revoked CA keys) by dropRevoked.
	judge := func(ca *caBundle, trustChanged bool) outcome {
		eval := maps.Clone(ch.ids)
		if eval == nil {
			eval = map[string]bool{}
		}
		if trustChanged {
			for _, m := range []map[string]rawValue{l.crt, l.key} {
				for name := range m {
					if !s.o.wants(name) {
						continue
					}
					if id := cur.ids[name]; id == nil || id.crtRev != l.crt[name].rev || id.keyRev != l.key[name].rev {
						eval[name] = true
					}
				}
			}
		}
		out := l.evaluate(cur, eval, ca, rl, now)
		if trustChanged {
			l.dropRevoked(&out, rl, ca)
		}
		return out
	}
	out := judge(ca, caChanged || revChanged)
	if caChanged {
		if orphans := l.orphans(out.ids, cur.ca, ca, now); len(orphans) > 0 {
			pre = append(pre, refused{r: refusal{crtRev: l.ca.rev, reason: ReasonOrphaned},
				err: reject(ReasonOrphaned, "the bundle does not sign identities in use: %s (rotate their certificates first): %w",
					strings.Join(orphans, ", "), ErrOrphanedIdentity).at(CAKey(s.o.prefix), l.ca.rev)})
			ca, caChanged = cur.ca, false
			out = judge(ca, revChanged)
		} else {
			// Identities deleted from etcd stay in use while they are
			// trusted; once the bundle no longer signs them they go.
			for name, id := range out.ids {
				if !l.crt[name].present() && verifyChain(id.cert, ca, now) != nil {
					delete(out.ids, name)
					out.dropped = append(out.dropped, name)
					s.log.Info("mtls: identity deleted from etcd and no longer trusted by the CA bundle; dropped", "identity", name)
				}
			}
		}
	}

	for _, r := range append(pre, out.refused...) {
		l.report(r, cur)
	}
	if caChanged {
		l.clearRefusal("")
		s.m.reloaded()
		attrs := []any{"key", CAKey(s.o.prefix), "revision", ca.rev, "cas", describeCAs(ca, now)}
		if s.o.pins.pinned() {
			s.log.Info("mtls: CA bundle loaded", attrs...)
		} else {
			s.log.Warn("mtls: CA bundle loaded without pinned trust anchors: whoever can write it decides whom this process trusts (see WithTrustAnchors, WithBundleSigners)", attrs...)
		}
	}
	if revChanged {
		s.m.reloaded()
		if rl == nil {
			s.log.Warn("mtls: revocation list deleted; no certificate is revoked any more", "key", RevokedKey(s.o.prefix))
		} else {
			s.log.Info("mtls: revocation list loaded", "key", RevokedKey(s.o.prefix), "revision", rl.rev, "entries", len(rl.entries))
		}
	}
	for _, name := range out.accepted {
		id, old := out.ids[name], cur.ids[name]
		l.clearRefusal(name)
		s.m.reloaded()
		attrs := []any{"identity", name, "revision", id.crtRev, "serial", serialHex(id.cert.Leaf),
			"not_after", id.cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "kek", id.kekID}
		if old != nil {
			attrs = append(attrs, "previous_serial", serialHex(old.cert.Leaf))
		}
		s.log.Info("mtls: identity loaded", attrs...)
	}
	if !caChanged && !revChanged && !clientsChanged && len(out.accepted) == 0 && len(out.dropped) == 0 {
		return
	}
	next := &state{ca: ca, ids: out.ids, names: slices.Sorted(maps.Keys(out.ids)), revoked: rl, clients: clients}
	s.cur.Store(next)
	s.changed.fire()
	if caChanged || revChanged || clientsChanged || len(out.dropped) > 0 {
		s.conns.sweep()
	}
}

// reconcileCA validates the bundle read, if it changed, against the
// bundle in use.
func (l *watchLoop) reconcileCA(cur *state, now time.Time) (*caBundle, bool, []refused) {
	s := l.s
	caKey := CAKey(s.o.prefix)
	switch {
	case !l.ca.present():
		if cur.ca != nil {
			return cur.ca, false, []refused{{r: refusal{reason: ReasonDeleted},
				err: reject(ReasonDeleted, "CA bundle deleted; the bundle in use stays").at(caKey, 0)}}
		}
		return cur.ca, false, nil
	case cur.ca != nil && bytes.Equal(cur.ca.raw, l.ca.value):
		// The bundle in use written again (after a refused update, say),
		// or only its signature changed: nothing changes, nothing is
		// refused any more.
		l.clearRefusal("")
		return cur.ca, false, nil
	}
	bad := func(verr *ValidationError) (*caBundle, bool, []refused) {
		return cur.ca, false, []refused{{r: refusal{crtRev: l.ca.rev, keyRev: l.sig.rev, reason: verr.Reason}, err: verr.at(caKey, l.ca.rev)}}
	}
	b, verr := parseBundle(l.ca.value, now)
	if verr != nil {
		return bad(verr)
	}
	b.rev = l.ca.rev
	if s.o.pins.pinned() {
		at, verr := s.o.pins.check(caKey, b, l.sig.value, now)
		if verr != nil {
			return bad(verr)
		}
		if cur.ca != nil && !at.IsZero() && at.Before(cur.ca.signedAt) {
			return bad(reject(ReasonUnpinned, "CA bundle signed at %s, before the bundle in use (signed at %s): an older bundle written again is refused; sign it again: %w",
				at.UTC().Format(time.RFC3339), cur.ca.signedAt.UTC().Format(time.RFC3339), ErrUnpinned))
		}
		b.signedAt = at
	}
	return b, true, nil
}

// reconcileRevoked validates the revocation list read, if it changed.
// Deleting it empties it: every process then agrees, the ones started
// after the deletion included.
func (l *watchLoop) reconcileRevoked(cur *state, touched bool) (*revocationList, bool, []refused) {
	s := l.s
	if !touched {
		return cur.revoked, false, nil
	}
	switch {
	case !l.revoked.present():
		l.clearRefusal(slotRevoked)
		return nil, cur.revoked != nil, nil
	case cur.revoked != nil && bytes.Equal(cur.revoked.raw, l.revoked.value):
		l.clearRefusal(slotRevoked)
		return cur.revoked, false, nil
	}
	rl, verr := parseRevocations(l.revoked.value)
	if verr != nil {
		return cur.revoked, false, []refused{{name: slotRevoked, r: refusal{crtRev: l.revoked.rev, reason: verr.Reason},
			err: verr.at(RevokedKey(s.o.prefix), l.revoked.rev)}}
	}
	rl.rev = l.revoked.rev
	l.clearRefusal(slotRevoked)
	return rl, true, nil
}

// reconcileClients validates the client policies read that changed. A
// deleted policy is removed.
func (l *watchLoop) reconcileClients(cur *state, touched map[string]bool) (map[string]*peerIDs, bool, []refused) {
	s := l.s
	next, changed := cur.clients, false
	var out []refused
	set := func(name string, p *peerIDs) {
		if !changed {
			next, changed = maps.Clone(cur.clients), true
			if next == nil {
				next = map[string]*peerIDs{}
			}
		}
		if p == nil {
			delete(next, name)
		} else {
			next[name] = p
		}
	}
	for _, name := range slices.Sorted(maps.Keys(touched)) {
		raw := l.clients[name]
		if !raw.present() {
			l.clearRefusal(slotClients(name))
			if cur.clients[name] != nil {
				set(name, nil)
				s.log.Warn("mtls: client policy deleted; the identity accepts every client the CA bundle trusts", "identity", name)
			}
			continue
		}
		p, verr := parseClientPolicy(raw.value)
		if verr != nil {
			out = append(out, refused{name: slotClients(name), r: refusal{crtRev: raw.rev, reason: verr.Reason},
				err: verr.at(ClientsKey(s.o.prefix, name), raw.rev)})
			continue
		}
		l.clearRefusal(slotClients(name))
		set(name, p)
		attrs := []any{"identity", name, "revision", raw.rev, "allow", p.String()}
		if s.o.clients[name] != nil {
			s.log.Info("mtls: client policy in etcd ignored: WithAllowedClients is set for the identity", attrs...)
		} else {
			s.log.Info("mtls: client policy loaded", attrs...)
		}
	}
	return next, changed, out
}

// dropRevoked stops serving the identities in use that rl revokes.
func (l *watchLoop) dropRevoked(out *outcome, rl *revocationList, ca *caBundle) {
	s := l.s
	for _, name := range slices.Sorted(maps.Keys(out.ids)) {
		id := out.ids[name]
		if r, c := rl.match(id.chain, ca); r != nil {
			delete(out.ids, name)
			out.dropped = append(out.dropped, name)
			out.refused = append(out.refused, refused{name: name, r: refusal{crtRev: id.crtRev, keyRev: id.keyRev, reason: ReasonRevoked},
				err: reject(ReasonRevoked, "%w; no longer served", revokedError(c, r)).at(CertKey(s.o.prefix, name), id.crtRev)})
		}
	}
}

// evaluate validates the identities in names against ca and rl and
// returns the good identities that result, starting from cur's.
func (l *watchLoop) evaluate(cur *state, names map[string]bool, ca *caBundle, rl *revocationList, now time.Time) outcome {
	s := l.s
	out := outcome{ids: maps.Clone(cur.ids)}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		crt, key := l.crt[name], l.key[name]
		id := cur.ids[name]
		r := refusal{crtRev: crt.rev, keyRev: key.rev}
		var verr *ValidationError
		switch {
		case !crt.present() && !key.present():
			if id == nil {
				// Never served and now gone: forget its refusals.
				l.clearRefusal(name)
				continue
			}
			if s.o.dropDel {
				delete(out.ids, name)
				out.dropped = append(out.dropped, name)
				l.clearRefusal(name)
				s.log.Warn("mtls: identity deleted from etcd; no longer served (WithDropDeleted)", "identity", name, "serial", serialHex(id.cert.Leaf))
				continue
			}
			verr = reject(ReasonDeleted, "identity deleted; the material in use stays").at(CertKey(s.o.prefix, name), 0)
		case id != nil && id.crtRev == crt.rev && id.keyRev == key.rev:
			continue // in use already
		case !key.present():
			verr = reject(ReasonIncomplete, "certificate without a private key at %s", KeyKey(s.o.prefix, name)).at(CertKey(s.o.prefix, name), crt.rev)
		case !crt.present():
			verr = reject(ReasonIncomplete, "private key without a certificate at %s", CertKey(s.o.prefix, name)).at(KeyKey(s.o.prefix, name), key.rev)
		default:
			var good *identity
			good, verr = buildIdentity(&s.o, name, crt, key, ca, rl, now)
			if verr == nil {
				out.ids[name] = good
				out.accepted = append(out.accepted, name)
				continue
			}
		}
		r.reason = verr.Reason
		out.refused = append(out.refused, refused{name: name, r: r, err: verr})
	}
	return out
}

// orphans returns the names of the identities present in etcd that are
// in use and that next does not sign: those the Store serves (in ids), and,
// for identities it does not load (WithIdentities), those whose
// certificate in etcd chains to the bundle in use (old), as PublishCA
// checks them.
func (l *watchLoop) orphans(ids map[string]*identity, old, next *caBundle, now time.Time) []string {
	var out []string
	for name, crt := range l.crt {
		var c *tls.Certificate
		if l.s.o.wants(name) {
			id := ids[name]
			if id == nil {
				continue
			}
			c = id.cert
		} else {
			chain, err := decodeCertificates(crt.value)
			if err != nil || old == nil {
				continue
			}
			c = pairless(chain)
			if verifyChain(c, old, now) != nil {
				continue
			}
		}
		if verr := verifyChain(c, next, now); verr != nil && verr.Reason == ReasonUntrusted {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// clearRefusal forgets the refusal reported for a name or slot: the value
// it was about is gone or good again.
func (l *watchLoop) clearRefusal(name string) {
	delete(l.reported, name)
	l.s.mu.Lock()
	delete(l.s.rejected, name)
	l.s.mu.Unlock()
}

// report logs and counts a refusal, once per value and reason.
func (l *watchLoop) report(r refused, cur *state) {
	s := l.s
	if prev, ok := l.reported[r.name]; ok && prev == r.r {
		return
	}
	l.reported[r.name] = r.r
	s.mu.Lock()
	s.rejected[r.name] = r.err
	s.mu.Unlock()
	s.m.refused(r.err.Reason)
	attrs := []any{"key", r.err.Key, "revision", r.err.Revision, "reason", string(r.err.Reason), "err", r.err.Err}
	switch name, _, isSlot := strings.Cut(r.name, "/"); {
	case r.name == "":
		if cur.ca != nil {
			attrs = append(attrs, "in_use_revision", cur.ca.rev)
		}
	case r.name == slotRevoked:
		if cur.revoked != nil {
			attrs = append(attrs, "in_use_revision", cur.revoked.rev)
		}
	case isSlot:
		attrs = append(attrs, "identity", name)
	default:
		if id := cur.ids[r.name]; id != nil {
			attrs = append(attrs, "identity", r.name, "in_use_serial", serialHex(id.cert.Leaf))
		} else {
			attrs = append(attrs, "identity", r.name)
		}
	}
	msg := "mtls: update refused; the last good material stays in use"
	if r.err.Reason == ReasonRevoked {
		msg = "mtls: identity revoked; not served"
	}
	s.log.Warn(msg, attrs...)
}

// describeCAs lists a bundle's CAs for logs: subject, serial, expiry.
func describeCAs(ca *caBundle, now time.Time) []string {
	out := make([]string, 0, len(ca.certs))
	for _, c := range ca.certs {
		d := fmt.Sprintf("%s serial %s until %s", c.Subject.CommonName, serialHex(c), c.NotAfter.UTC().Format(time.RFC3339))
		if now.After(c.NotAfter) {
			d += " (expired)"
		}
		out = append(out, d)
	}
	return out
}
