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

// outcome is what validating one batch of changes decided.
type outcome struct {
	ids      map[string]*identity // the good identities after the batch
	accepted []string             // names whose material changed
	refused  []refused
}

type refused struct {
	name string // "" for the CA bundle
	r    refusal
	err  *ValidationError
}

// reconcile validates what changed in the raw values (the CA bundle if
// touchedCA, the identities in touched) and swaps in the resulting state
// if the material in use changed.
//
// A new CA bundle is accepted only if every identity in use that is still
// present in etcd chains to it: removing a CA that still signs an identity
// in use would break handshakes, so the whole bundle is refused with
// ReasonOrphaned and the bundle in use stays until the CA key is written
// again (it is not retried when the identities change: the bundle then
// would switch in every process at the instant the last leaf does, which
// is the race the overlap procedure avoids). When a bundle is accepted,
// identities refused earlier are validated again against it (a leaf from a
// new CA written before the CA was added becomes good once it is).
func (l *watchLoop) reconcile(touchedCA bool, touched map[string]bool) {
	s := l.s
	now := s.o.now()
	cur := s.cur.Load()
	var caRefusals []refused

	ca, caChanged := cur.ca, false
	if touchedCA {
		switch {
		case !l.ca.present():
			if cur.ca != nil {
				caRefusals = append(caRefusals, refused{r: refusal{reason: ReasonDeleted},
					err: reject(ReasonDeleted, "CA bundle deleted; the bundle in use stays").at(CAKey(s.o.prefix), 0)})
			}
		case cur.ca != nil && bytes.Equal(cur.ca.raw, l.ca.value):
			// The bundle in use written again (after a refused update,
			// say): nothing changes, nothing is refused any more.
			delete(l.reported, "")
			s.mu.Lock()
			delete(s.rejected, "")
			s.mu.Unlock()
		default:
			b, verr := parseBundle(l.ca.value, now)
			if verr != nil {
				caRefusals = append(caRefusals, refused{r: refusal{crtRev: l.ca.rev, reason: verr.Reason}, err: verr.at(CAKey(s.o.prefix), l.ca.rev)})
				break
			}
			b.rev = l.ca.rev
			ca, caChanged = b, true
		}
	}

	eval := maps.Clone(touched)
	if caChanged {
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
	out := l.evaluate(cur, eval, ca, now)
	var dropped []string
	if caChanged {
		if orphans := l.orphans(out.ids, cur.ca, ca, now); len(orphans) > 0 {
			caRefusals = append(caRefusals, refused{r: refusal{crtRev: l.ca.rev, reason: ReasonOrphaned},
				err: reject(ReasonOrphaned, "the bundle does not sign identities in use: %s (rotate their certificates first): %w",
					strings.Join(orphans, ", "), ErrOrphanedIdentity).at(CAKey(s.o.prefix), l.ca.rev)})
			ca, caChanged = cur.ca, false
			out = l.evaluate(cur, touched, ca, now)
		} else {
			// Identities deleted from etcd stay in use while they are
			// trusted; once the bundle no longer signs them they go.
			for name, id := range out.ids {
				if !l.crt[name].present() && verifyChain(id.cert, ca, now) != nil {
					delete(out.ids, name)
					dropped = append(dropped, name)
				}
			}
		}
	}

	for _, r := range append(caRefusals, out.refused...) {
		l.report(r, cur)
	}
	if caChanged {
		delete(l.reported, "")
		s.mu.Lock()
		delete(s.rejected, "")
		s.mu.Unlock()
		s.m.reloaded()
		s.log.Info("mtls: CA bundle loaded", "key", CAKey(s.o.prefix), "revision", ca.rev, "cas", describeCAs(ca, now))
	}
	for _, name := range out.accepted {
		id, old := out.ids[name], cur.ids[name]
		delete(l.reported, name)
		s.mu.Lock()
		delete(s.rejected, name)
		s.mu.Unlock()
		s.m.reloaded()
		attrs := []any{"identity", name, "revision", id.crtRev, "serial", serialHex(id.cert.Leaf),
			"not_after", id.cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "kek", id.kekID}
		if old != nil {
			attrs = append(attrs, "previous_serial", serialHex(old.cert.Leaf))
		}
		s.log.Info("mtls: identity loaded", attrs...)
	}
	for _, name := range dropped {
		s.log.Info("mtls: identity deleted from etcd and no longer trusted by the CA bundle; dropped", "identity", name)
	}
	if !caChanged && len(out.accepted) == 0 && len(dropped) == 0 {
		return
	}
	next := &state{ca: ca, ids: out.ids, names: slices.Sorted(maps.Keys(out.ids))}
	s.cur.Store(next)
	s.changed.fire()
}

// evaluate validates the identities in names against ca and returns the
// good identities that result, starting from cur's.
func (l *watchLoop) evaluate(cur *state, names map[string]bool, ca *caBundle, now time.Time) outcome {
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
				delete(l.reported, name)
				s.mu.Lock()
				delete(s.rejected, name)
				s.mu.Unlock()
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
			good, verr = buildIdentity(s.o.prefix, name, crt, key, s.o.keyring, s.o.allowPlain, ca, now)
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
	if r.name == "" {
		if cur.ca != nil {
			attrs = append(attrs, "in_use_revision", cur.ca.rev)
		}
	} else if id := cur.ids[r.name]; id != nil {
		attrs = append(attrs, "identity", r.name, "in_use_serial", serialHex(id.cert.Leaf))
	} else {
		attrs = append(attrs, "identity", r.name)
	}
	s.log.Warn("mtls: update refused; the last good material stays in use", attrs...)
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
