package mtls

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxPeerIDs bounds an allow list: a service is called by tens of
// identities, not thousands.
const maxPeerIDs = 1024

// Peer IDs name who may be on the other end of a connection, by a subject
// alternative name of its certificate:
//
//	dns:web.example.com             a DNS name (case does not matter)
//	uri:https://id.example.com/web  a URI
//	spiffe://example.org/ns/prod/sa/web   a SPIFFE ID (a URI; "uri:" may be left out)
//	*                               any peer whose certificate chains to the CA bundle
//
// An allow list holds one or more of them; a peer is allowed if its leaf
// certificate holds at least one. The subject's common name is never
// used, as for host name verification.
type peerIDs struct {
	any  bool
	dns  map[string]bool
	uris map[string]bool
	list []string // as given, for messages
}

// parsePeerIDs validates an allow list.
func parsePeerIDs(ids []string) (*peerIDs, error) {
	if len(ids) == 0 {
		return nil, errors.New(`empty allow list (use "*" to allow every peer the CA bundle trusts)`)
	}
	if len(ids) > maxPeerIDs {
		return nil, fmt.Errorf("%d peer IDs, at most %d", len(ids), maxPeerIDs)
	}
	p := &peerIDs{dns: map[string]bool{}, uris: map[string]bool{}, list: slices.Clone(ids)}
	for _, id := range ids {
		switch {
		case id == "*":
			p.any = true
		case strings.HasPrefix(id, "dns:"):
			name := strings.ToLower(strings.TrimSuffix(id[len("dns:"):], "."))
			if name == "" || strings.ContainsAny(name, " /*") {
				return nil, fmt.Errorf("peer ID %q: want dns:<host name>", trunc(id))
			}
			p.dns[name] = true
		case strings.HasPrefix(id, "uri:"):
			if err := checkURI(id[len("uri:"):]); err != nil {
				return nil, fmt.Errorf("peer ID %q: %w", trunc(id), err)
			}
			p.uris[id[len("uri:"):]] = true
		case strings.HasPrefix(id, "spiffe://"):
			if err := checkURI(id); err != nil {
				return nil, fmt.Errorf("peer ID %q: %w", trunc(id), err)
			}
			p.uris[id] = true
		default:
			return nil, fmt.Errorf(`peer ID %q: want dns:<name>, uri:<uri>, spiffe://<trust domain>/<path> or "*"`, trunc(id))
		}
	}
	return p, nil
}

func checkURI(s string) error {
	if !strings.Contains(s, "://") || strings.ContainsAny(s, " \t\n") {
		return errors.New("want an absolute URI")
	}
	return nil
}

// allows reports whether leaf holds one of the IDs.
func (p *peerIDs) allows(leaf *x509.Certificate) bool {
	if p == nil || p.any {
		return true
	}
	for _, n := range leaf.DNSNames {
		if p.dns[strings.ToLower(strings.TrimSuffix(n, "."))] {
			return true
		}
	}
	for _, u := range leaf.URIs {
		if p.uris[uriString(u)] {
			return true
		}
	}
	return false
}

func (p *peerIDs) String() string { return strings.Join(p.list, ", ") }

// ClientPolicy is the JSON document at <prefix>/<name>/clients: the
// clients a server presenting identity <name> accepts, as peer IDs (see
// WithAllowedClients for their forms):
//
//	{"allow": ["spiffe://example.org/ns/prod/sa/web", "dns:batch.example.com"]}
//
// Without a policy (and without WithAllowedClients for the identity), a
// server accepts every client whose certificate chains to the CA bundle
// and is not revoked. A policy that does not parse is refused
// (ReasonMalformed) and the last good one stays; deleting the key removes
// the policy. WithAllowedClients, when given for the identity, takes
// precedence and the key is ignored.
type ClientPolicy struct {
	Allow []string `json:"allow"`
}

// parseClientPolicy validates a policy read from etcd.
func parseClientPolicy(data []byte) (*peerIDs, *ValidationError) {
	if len(data) > maxPEMSize {
		return nil, reject(ReasonMalformed, "client policy: %d bytes, at most %d", len(data), maxPEMSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var cp ClientPolicy
	if err := dec.Decode(&cp); err != nil {
		return nil, reject(ReasonMalformed, "client policy: %w", err)
	}
	if dec.More() {
		return nil, reject(ReasonMalformed, "client policy: data after the JSON document")
	}
	p, err := parsePeerIDs(cp.Allow)
	if err != nil {
		return nil, reject(ReasonMalformed, "client policy: %w", err)
	}
	return p, nil
}

// Why a handshake refused its peer: the "reason" label of
// smartroute_mtls_peer_refused_total and smartroute_mtls_connections_closed_total.
const (
	peerUntrusted     = "untrusted"
	peerRevoked       = "revoked"
	peerUnauthorized  = "unauthorized"
	peerNoCertificate = "no_certificate"
	peerNotServed     = "not_served" // closed connections only: the identity presented is no longer served
)

var peerReasons = []string{peerUntrusted, peerRevoked, peerUnauthorized, peerNoCertificate}

// Sides of a connection, the "side" label of the peer metrics.
const (
	sideServer = "server" // we accepted; the peer is a client
	sideClient = "client" // we dialled; the peer is a server
)

// peerError is a handshake's refusal of its peer, with the reason for the
// logs and metrics. The TLS alert the peer receives names no reason.
type peerError struct {
	reason string
	err    error
}

func (e *peerError) Error() string { return e.err.Error() }
func (e *peerError) Unwrap() error { return e.err }
