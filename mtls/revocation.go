package mtls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of the revocation list. A list is one etcd value (1.5 MiB at
// most by default); an entry is about 150 bytes, so 10,000 entries fit
// with room to spare. A longer list means the CA should be rotated.
const (
	maxRevocations      = 10000
	maxRevocationReason = 256
)

// Revocation is one entry of the revocation list at <prefix>/revoked. It
// names a certificate by Serial (hexadecimal, as CertificateInfo.Serial
// and lbprobe certs list print it) or every certificate of a key by
// SPKISHA256 (base64 SHA-256 of the SubjectPublicKeyInfo, as
// CertificateInfo.SPKISHA256), with why and when.
//
// The list is JSON:
//
//	{"revoked": [
//	  {"serial": "5e1f0c…", "reason": "laptop stolen", "revoked_at": "2026-03-01T10:00:00Z"},
//	  {"spki_sha256": "q1b4…=", "reason": "key compromise", "revoked_at": "2026-03-02T08:30:00Z"}
//	]}
//
// Every certificate a peer presents (its leaf and its intermediates) is
// checked against the list at every handshake, on both sides; a Store
// also refuses to serve an identity whose certificate is listed
// (ReasonRevoked). Serial numbers are unique per CA only: while several
// CAs sign identities, prefer spki_sha256 or revoke the leaf's serial
// knowing that any CA could have issued it.
type Revocation struct {
	Serial     string    `json:"serial,omitempty"`
	SPKISHA256 string    `json:"spki_sha256,omitempty"`
	Reason     string    `json:"reason"`
	RevokedAt  time.Time `json:"revoked_at"`
}

// revocationFile is the JSON document at <prefix>/revoked.
type revocationFile struct {
	Revoked []Revocation `json:"revoked"`
}

// revocationList is a validated revocation list.
type revocationList struct {
	raw     []byte
	rev     int64
	entries []Revocation
	serials map[string]int // normalised serial -> index in entries
	spkis   map[string]int // base64 SPKI SHA-256 -> index
}

// parseRevocations validates a revocation list: JSON with only the known
// fields, every entry naming exactly one of serial and spki_sha256 in
// their canonical forms (normalised here), a reason and a time.
func parseRevocations(data []byte) (*revocationList, *ValidationError) {
	if len(data) > maxPEMSize {
		return nil, reject(ReasonMalformed, "revocation list: %d bytes, at most %d", len(data), maxPEMSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f revocationFile
	if err := dec.Decode(&f); err != nil {
		return nil, reject(ReasonMalformed, "revocation list: %w", err)
	}
	if dec.More() {
		return nil, reject(ReasonMalformed, "revocation list: data after the JSON document")
	}
	if f.Revoked == nil {
		return nil, reject(ReasonMalformed, `revocation list: no "revoked" array (write {"revoked": []} for an empty list)`)
	}
	if len(f.Revoked) > maxRevocations {
		return nil, reject(ReasonMalformed, "revocation list: %d entries, at most %d", len(f.Revoked), maxRevocations)
	}
	l := &revocationList{raw: bytes.Clone(data), entries: make([]Revocation, 0, len(f.Revoked)), serials: map[string]int{}, spkis: map[string]int{}}
	for i, r := range f.Revoked {
		n, err := r.normalize()
		if err != nil {
			return nil, reject(ReasonMalformed, "revocation list: entry %d: %w", i, err)
		}
		l.entries = append(l.entries, n)
		if n.Serial != "" {
			l.serials[n.Serial] = len(l.entries) - 1
		} else {
			l.spkis[n.SPKISHA256] = len(l.entries) - 1
		}
	}
	return l, nil
}

// normalize checks an entry and returns it in canonical form.
func (r Revocation) normalize() (Revocation, error) {
	switch {
	case r.Serial != "" && r.SPKISHA256 != "":
		return r, errors.New("give serial or spki_sha256, not both")
	case r.Serial != "":
		s, err := normSerial(r.Serial)
		if err != nil {
			return r, err
		}
		r.Serial = s
	case r.SPKISHA256 != "":
		p, err := normSPKI(r.SPKISHA256)
		if err != nil {
			return r, err
		}
		r.SPKISHA256 = p
	default:
		return r, errors.New("no serial and no spki_sha256")
	}
	if strings.TrimSpace(r.Reason) == "" {
		return r, errors.New("no reason")
	}
	if len(r.Reason) > maxRevocationReason {
		return r, fmt.Errorf("reason of %d bytes, at most %d", len(r.Reason), maxRevocationReason)
	}
	if r.RevokedAt.IsZero() {
		return r, errors.New("no revoked_at time")
	}
	r.RevokedAt = r.RevokedAt.UTC()
	if y := r.RevokedAt.Year(); y < 1 || y > 9999 {
		// Found by FuzzRevocationList: "0000-01-01T00:00:00+01:00" is year
		// -1 in UTC, which JSON cannot write back.
		return r, fmt.Errorf("revoked_at %s is out of range", r.RevokedAt.Format(time.RFC3339))
	}
	return r, nil
}

// normSerial reads a serial number in hexadecimal (case and colons, as
// openssl prints them, do not matter) and returns it as serialHex does.
func normSerial(s string) (string, error) {
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(s), "0x"), ":", "")
	if h == "" || len(h) > 64 {
		return "", fmt.Errorf("serial %q: want 1 to 64 hexadecimal digits", trunc(s))
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() < 0 {
		return "", fmt.Errorf("serial %q is not hexadecimal", trunc(s))
	}
	return n.Text(16), nil
}

// normSPKI reads a SHA-256 pin in base64 (standard or URL alphabet,
// padded or not) or hexadecimal and returns it in standard base64.
func normSPKI(s string) (string, error) {
	if len(s) == 2*sha256.Size {
		if b, err := hex.DecodeString(s); err == nil {
			return base64.StdEncoding.EncodeToString(b), nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == sha256.Size {
			return base64.StdEncoding.EncodeToString(b), nil
		}
	}
	return "", fmt.Errorf("spki_sha256 %q is not the base64 or hex of 32 bytes", trunc(s))
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// match returns the entry that revokes one of certs (a chain, leaf
// first) or a CA of ca that issued one of them, and the certificate it
// revokes; nil if none. Revoking a CA's key (spki_sha256) so refuses every
// certificate it signed. A nil list revokes nothing.
func (l *revocationList) match(certs []*x509.Certificate, ca *caBundle) (*Revocation, *x509.Certificate) {
	if l == nil || len(l.entries) == 0 {
		return nil, nil
	}
	for _, c := range certs {
		if r := l.matchOne(c); r != nil {
			return r, c
		}
	}
	if ca == nil {
		return nil, nil
	}
	for _, c := range certs {
		for _, issuer := range ca.certs {
			if !bytes.Equal(issuer.RawSubject, c.RawIssuer) {
				continue
			}
			if r := l.matchOne(issuer); r != nil && c.CheckSignatureFrom(issuer) == nil {
				return r, issuer
			}
		}
	}
	return nil, nil
}

func (l *revocationList) matchOne(c *x509.Certificate) *Revocation {
	if i, ok := l.serials[serialHex(c)]; ok {
		return &l.entries[i]
	}
	if i, ok := l.spkis[SPKIPin(c)]; ok {
		return &l.entries[i]
	}
	return nil
}

// revokedError describes why c was refused.
func revokedError(c *x509.Certificate, r *Revocation) error {
	by := "serial " + r.Serial
	if r.Serial == "" {
		by = "key " + r.SPKISHA256
	}
	return fmt.Errorf("certificate (%s, serial %s) revoked by %s at %s (%s): %w",
		c.Subject, serialHex(c), by, r.RevokedAt.Format(time.RFC3339), r.Reason, ErrRevoked)
}

// Revoke adds entries to the revocation list at <prefix>/revoked (created
// if absent), in one compare-and-swap transaction retried while the list
// changes under it, and returns the revision of the write. Entries already
// listed (same serial or key) are kept as they were. An entry without
// RevokedAt gets the current time (WithClock). Stores apply the list at
// once: new handshakes presenting a listed certificate fail on both sides,
// and the connections tracked by NewListener and DialTLSContext that
// present one are closed.
//
// Options: WithPrefix, WithClock, WithEtcdTimeout.
func Revoke(ctx context.Context, cli *clientv3.Client, entries []Revocation, opts ...Option) (int64, error) {
	o := newOptions(opts)
	if len(entries) == 0 {
		return 0, errors.New("mtls: revoke: no entry")
	}
	entries = slices.Clone(entries)
	for i := range entries {
		if entries[i].RevokedAt.IsZero() {
			entries[i].RevokedAt = o.now()
		}
		n, err := entries[i].normalize()
		if err != nil {
			return 0, fmt.Errorf("mtls: revoke: entry %d: %w", i, err)
		}
		entries[i] = n
	}
	return updateRevocations(ctx, cli, o, func(l *revocationList) []Revocation {
		out := l.entries
		for _, e := range entries {
			if _, ok := l.serials[e.Serial]; e.Serial != "" && ok {
				continue
			}
			if _, ok := l.spkis[e.SPKISHA256]; e.SPKISHA256 != "" && ok {
				continue
			}
			out = append(out, e)
		}
		return out
	})
}

// Unrevoke removes the entries naming serial or SPKI pin from the
// revocation list and returns the revision of the write. Options as
// Revoke's.
func Unrevoke(ctx context.Context, cli *clientv3.Client, serialOrSPKI string, opts ...Option) (int64, error) {
	o := newOptions(opts)
	serial, serr := normSerial(serialOrSPKI)
	spki, perr := normSPKI(serialOrSPKI)
	if serr != nil && perr != nil {
		return 0, fmt.Errorf("mtls: unrevoke %q: neither a serial number nor an SPKI pin", trunc(serialOrSPKI))
	}
	return updateRevocations(ctx, cli, o, func(l *revocationList) []Revocation {
		var out []Revocation
		for _, e := range l.entries {
			if (serr == nil && e.Serial == serial) || (perr == nil && e.SPKISHA256 == spki) {
				continue
			}
			out = append(out, e)
		}
		return out
	})
}

// updateRevocations reads the list, applies change and writes the result
// if the list has not changed since it was read.
func updateRevocations(ctx context.Context, cli *clientv3.Client, o options, change func(*revocationList) []Revocation) (int64, error) {
	ctx, cancel := withDefaultTimeout(ctx, o.etcdTimeout)
	defer cancel()
	key := RevokedKey(o.prefix)
	for range publishAttempts {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("mtls: revocation list: read %s: %w", key, err)
		}
		cur, rev := &revocationList{serials: map[string]int{}, spkis: map[string]int{}}, int64(0)
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			var verr *ValidationError
			if cur, verr = parseRevocations(resp.Kvs[0].Value); verr != nil {
				return 0, fmt.Errorf("mtls: revocation list: the list in etcd is not usable (fix or delete it first): %w", verr.at(key, rev))
			}
		}
		next := change(cur)
		if next == nil {
			next = []Revocation{}
		}
		value, err := json.MarshalIndent(revocationFile{Revoked: next}, "", "  ")
		if err != nil {
			return 0, fmt.Errorf("mtls: revocation list: %w", err)
		}
		if _, verr := parseRevocations(value); verr != nil {
			return 0, fmt.Errorf("mtls: revocation list: %w", verr)
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(value))).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("mtls: revocation list: write %s: %w", key, err)
		}
		if txn.Succeeded {
			return txn.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("mtls: revocation list: %s changed %d times during the write: %w", key, publishAttempts, ErrConflict)
}
