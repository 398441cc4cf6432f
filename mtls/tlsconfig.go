package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// cipherSuites are the TLS 1.2 suites the configs allow: ECDHE key
// exchange (forward secrecy) with AEAD ciphers only. TLS 1.3 suites are
// not configurable and all qualify.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig returns a tls.Config for a server that presents the
// identities names and requires client certificates signed by the CA
// bundle. With no names it presents every identity the Store holds.
//
// Every handshake reads the Store's current material, so the returned
// config serves through every rotation of certificates and CAs;
// connections already established are not affected by a rotation:
//
//   - GetCertificate picks, among names in order, the first identity whose
//     certificate is valid for the client's SNI, or else the first
//     identity that has material;
//   - a client certificate is required (tls.RequireAnyClientCert, which
//     also makes the client prove it holds the key) and VerifyConnection
//     verifies its chain with x509 against the current CA bundle, for
//     client authentication, at the Store's clock; then that no
//     certificate of the chain is on the revocation list, and that the
//     client is allowed for the identity presented (WithAllowedClients,
//     or the policy at <prefix>/<name>/clients). VerifyConnection runs
//     on resumed sessions too, so a session from a certificate the
//     bundle no longer trusts, or that was revoked since, does not
//     resume.
//
// A refused client's handshake fails with a bad_certificate alert that
// says nothing more; the reason is logged (at most once per client
// certificate and reason every 10 s) and counted in
// smartroute_mtls_peer_refused_total{side="server",reason}.
//
// crypto/tls's own tls.RequireAndVerifyClientCert checks against a fixed
// ClientCAs pool, and swapping the pool per handshake (GetConfigForClient)
// would replace the whole config, dropping what net/http and grpc-go set
// on their copies of it (the "h2" ALPN protocol); verifying in
// VerifyConnection keeps one config in force. Do not clear
// VerifyConnection.
//
// To close the connections of a client once it is revoked or no longer
// allowed, accept them through NewListener.
//
// TLS 1.2 is the minimum, with ECDHE AEAD suites only. The caller may set
// fields the hooks do not own (NextProtos, session tickets) before first
// use. A handshake fails while no CA bundle or no identity is loaded.
func (s *Store) ServerConfig(names ...string) *tls.Config {
	names = slices.Clone(names)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(cipherSuites),
		// Required here, verified against the current bundle below.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			id, err := pick(s.cur.Load(), names, hello.ServerName)
			if err != nil {
				return nil, err
			}
			return id.cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			st := s.cur.Load()
			local := ""
			if id, err := pick(st, names, cs.ServerName); err == nil {
				local = id.name
			}
			return s.verifyPeer(st, sideServer, local, cs.PeerCertificates, "", x509.ExtKeyUsageClientAuth)
		},
		Time: s.o.now,
	}
}

// pick chooses the identity to present for the SNI serverName from st.
func pick(st *state, names []string, serverName string) (*identity, error) {
	all := names
	if len(all) == 0 {
		all = st.names
	}
	var first *identity
	for _, n := range all {
		id := st.ids[n]
		if id == nil {
			continue
		}
		if serverName != "" && id.cert.Leaf.VerifyHostname(serverName) == nil {
			return id, nil
		}
		if first == nil {
			first = id
		}
	}
	if first == nil {
		if len(names) == 0 {
			return nil, fmt.Errorf("mtls: server handshake: %w", ErrNoIdentity)
		}
		return nil, fmt.Errorf("mtls: server handshake: identities %q: %w", names, ErrNoIdentity)
	}
	return first, nil
}

// ClientConfig returns a tls.Config for a client that presents identity
// (none if identity is "") and accepts only a server whose certificate
// chains to the Store's current CA bundle and names serverName.
//
// When serverName is "", the name verified is the one the connection is
// made for (tls.Config.ServerName as net/http sets it per request from the
// URL host); a connection without one fails. Pass serverName explicitly
// when dialing an IP address for a named service.
//
// Every handshake reads the Store's current material: GetClientCertificate
// returns the identity's current certificate, and VerifyConnection verifies
// the server's chain with x509 against the current CA bundle, the name,
// the server-auth key usage and the Store's clock, then that no
// certificate of the chain is revoked. With WithAllowedServers for the
// name, the server must hold one of the IDs listed instead of the name (a
// SPIFFE ID, say). crypto/tls can only verify against a fixed RootCAs
// pool, which would go stale at the first CA rotation, so the config sets
// InsecureSkipVerify and does the complete verification itself in
// VerifyConnection, which runs on every handshake, resumed ones included;
// verification is never skipped. Do not clear VerifyConnection.
//
// To close pooled connections to a server once it is revoked, dial them
// with DialTLS.
//
// TLS 1.2 is the minimum, with ECDHE AEAD suites only.
func (s *Store) ClientConfig(identity, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(cipherSuites),
		ServerName:   serverName,
		// Verification is done in full by VerifyConnection below, against
		// the CA bundle current at each handshake.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyServer(cs, serverName)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if identity == "" {
				return &tls.Certificate{}, nil
			}
			return s.Certificate(identity)
		},
		Time: s.o.now,
	}
}

// errNoServerName fails a client handshake that has no name to verify.
var errNoServerName = errors.New("mtls: client handshake: no server name to verify (set serverName in ClientConfig)")

// verifyServer verifies the server's certificate chain of a client
// handshake against the current CA bundle.
func (s *Store) verifyServer(cs tls.ConnectionState, serverName string) error {
	name := serverName
	if name == "" {
		name = cs.ServerName
	}
	if name == "" {
		return errNoServerName
	}
	return s.verifyPeer(s.cur.Load(), sideClient, name, cs.PeerCertificates, name, x509.ExtKeyUsageServerAuth)
}

// verifyPeer verifies a peer's chain against st's CA bundle, for usage
// and, when name is not "", for that host name or IP address (unless
// WithAllowedServers lists IDs for it); then checkPeer. local is the
// identity presented (server side) or the server name verified (client
// side). A refusal is counted and logged.
func (s *Store) verifyPeer(st *state, side, local string, certs []*x509.Certificate, name string, usage x509.ExtKeyUsage) error {
	perr := s.judgePeer(st, side, local, certs, name, usage)
	if perr == nil {
		return nil
	}
	s.refusedPeer(side, local, certs, perr)
	return perr
}

func (s *Store) judgePeer(st *state, side, local string, certs []*x509.Certificate, name string, usage x509.ExtKeyUsage) *peerError {
	if st.ca == nil {
		return &peerError{peerUntrusted, fmt.Errorf("mtls: verify peer: %w", ErrNoCABundle)}
	}
	if len(certs) == 0 {
		return &peerError{peerNoCertificate, errors.New("mtls: verify peer: no certificate presented")}
	}
	if side == sideClient && s.o.servers[local] != nil {
		name = "" // the allowed IDs replace the host name
	}
	if err := verifyCerts(certs, st.ca.pool, s.o.now(), name, usage); err != nil {
		return &peerError{peerUntrusted, fmt.Errorf("mtls: verify peer %s (serial %s): %w", certs[0].Subject, serialHex(certs[0]), err)}
	}
	return s.checkPeer(st, side, local, certs)
}

// checkPeer applies what can change while a connection is open: the
// revocation list and the authorization of the peer's identity. Handshakes
// and the sweeps of tracked connections share it.
func (s *Store) checkPeer(st *state, side, local string, certs []*x509.Certificate) *peerError {
	if r, c := st.revoked.match(certs, st.ca); r != nil {
		return &peerError{peerRevoked, fmt.Errorf("mtls: peer %s (serial %s) refused: %w", certs[0].Subject, serialHex(certs[0]), revokedError(c, r))}
	}
	p, what := s.o.servers[local], "servers allowed for "+local
	if side == sideServer {
		p, what = s.clientPolicy(st, local), "clients allowed for identity "+local
	}
	if !p.allows(certs[0]) {
		return &peerError{peerUnauthorized, fmt.Errorf("mtls: peer %s (serial %s, SANs %v) is not among the %s [%s]: %w",
			certs[0].Subject, serialHex(certs[0]), DescribeCertificate(certs[0]).SANs(), what, p, ErrNotAuthorized)}
	}
	return nil
}

// clientPolicy returns the clients allowed for a server presenting
// identity: the option's, else etcd's, else nil (any).
func (s *Store) clientPolicy(st *state, identity string) *peerIDs {
	if p := s.o.clients[identity]; p != nil {
		return p
	}
	return st.clients[identity]
}
