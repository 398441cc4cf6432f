package mtls

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Report is what Inspect found under the prefix and how a Store would
// judge it.
type Report struct {
	Prefix   string `json:"prefix"`
	Revision int64  `json:"revision"` // the etcd revision read
	// Pinned reports whether the options held trust anchors or bundle
	// signers.
	Pinned bool `json:"pinned"`
	// CA describes the bundle a Store would use; nil when it would refuse
	// it or none is stored.
	CA []CertificateInfo `json:"ca"`
	// CAStored describes the certificates of the bundle stored, when they
	// parse, whether or not a Store would accept them.
	CAStored []CertificateInfo `json:"ca_stored,omitempty"`
	// CARejected says why a Store would refuse the bundle stored.
	CARejected *ValidationError `json:"ca_rejected,omitempty"`
	// Revocations is the revocation list a Store would use.
	Revocations []Revocation `json:"revocations,omitempty"`
	// RevocationsRejected says why a Store would refuse the list stored.
	RevocationsRejected *ValidationError `json:"revocations_rejected,omitempty"`
	// Identities lists every identity stored, sorted by name.
	Identities []InspectedIdentity `json:"identities"`
}

// InspectedIdentity is one identity stored under the prefix, as a Store
// would judge it.
type InspectedIdentity struct {
	Identity
	// Stored describes the leaf certificate stored, when it parses; for a
	// refused identity it says which certificate was refused.
	Stored *CertificateInfo `json:"stored,omitempty"`
	// Key says how its private key is stored: "sealed", "plain",
	// "missing", or "malformed" (neither an envelope nor PEM).
	Key string `json:"key"`
	// SealedWith is the ID of the key-encryption key named by a sealed
	// key's envelope, opened or not.
	SealedWith string `json:"sealed_with,omitempty"`
	// ClientPolicy is the allow list at <prefix>/<name>/clients a Store
	// would use, nil when there is none or it would be refused.
	ClientPolicy []string `json:"client_policy,omitempty"`
	// ClientPolicyRejected says why a Store would refuse the policy stored.
	ClientPolicyRejected *ValidationError `json:"client_policy_rejected,omitempty"`
}

// Valid reports whether a Store would serve the identity.
func (i InspectedIdentity) Valid() bool { return i.Certificate != nil }

// Inspect reads the prefix once and judges what it holds exactly as a new
// Store with the same options would, with the same code: the CA bundle
// (PEM, CAs only, validity, the pins), the revocation list, each identity
// (key envelope, key match, validity, chain, revocation) and each client
// policy. It is what lbprobe certs list and verify print, so that they
// agree with the services.
//
// Without a keyring (WithKeyring), a sealed key is checked for form only,
// not opened: the identity is judged on everything else and its
// KeyChecked is false. A Store would refuse it (ReasonUnseal, no
// keyring); give the keyring to check the keys too.
//
// Inspect runs no goroutine and keeps nothing: ctx bounds the one read.
func Inspect(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Report, error) {
	if cli == nil {
		return nil, errors.New("mtls: Inspect: nil etcd client")
	}
	o := newOptions(opts)
	if err := o.err(); err != nil {
		return nil, fmt.Errorf("mtls: Inspect: %w", err)
	}
	o.inspect = true
	m, err := newStoreMetrics(nil)
	if err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	s := newStore(cli, o, m)
	rev, err := s.loop.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("mtls: list %s/: %w", o.prefix, err)
	}
	st := s.cur.Load()
	l := s.loop
	rep := &Report{Prefix: o.prefix, Revision: rev, Pinned: o.pins.pinned(), Identities: []InspectedIdentity{}}
	if st.ca != nil {
		for _, c := range st.ca.certs {
			rep.CA = append(rep.CA, DescribeCertificate(c))
		}
	}
	if l.ca.present() {
		if certs, err := decodeCertificates(l.ca.value); err == nil {
			for _, c := range certs {
				rep.CAStored = append(rep.CAStored, DescribeCertificate(c))
			}
		}
	}
	rep.CARejected = s.CARejected()
	if st.revoked != nil {
		rep.Revocations = slices.Clone(st.revoked.entries)
	}
	rep.RevocationsRejected = s.RevocationsRejected()

	byName := map[string]Identity{}
	for _, id := range s.Identities() {
		byName[id.Name] = id
	}
	names := map[string]bool{}
	for _, m := range []map[string]rawValue{l.crt, l.key} {
		for n := range m {
			if o.wants(n) {
				names[n] = true
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		ii := InspectedIdentity{Identity: byName[n], Key: "missing"}
		ii.Name = n
		if crt := l.crt[n]; crt.present() {
			if chain, err := decodeCertificates(crt.value); err == nil {
				info := DescribeCertificate(chain[0])
				ii.Stored = &info
			}
		}
		if key := l.key[n]; key.present() {
			switch {
			case isEnvelope(key.value):
				ii.Key = "sealed"
				if e, err := parseEnvelope(key.value); err == nil {
					ii.SealedWith = e.kekID
				}
			case looksLikePEMKey(key.value):
				ii.Key = "plain"
			default:
				ii.Key = "malformed"
			}
		}
		if p := s.clientPolicy(st, n); p != nil {
			ii.ClientPolicy = p.list
		}
		ii.ClientPolicyRejected = s.ClientPolicyRejected(n)
		rep.Identities = append(rep.Identities, ii)
	}
	return rep, nil
}
