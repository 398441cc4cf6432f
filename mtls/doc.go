// Package mtls keeps the certificates for mutual TLS in etcd and serves
// them, validated and hot-reloaded, through tls.Configs that never need to
// be rebuilt.
//
// # Key schema
//
// Under a prefix (DefaultPrefix, "/certs", or WithPrefix):
//
//	/certs/ca               PEM bundle of trusted CAs (old and new during a rotation)
//	/certs/ca.sig           optional: its detached signature (BundleSignature)
//	/certs/revoked          optional: the revocation list (Revocation)
//	/certs/<name>/tls.crt   PEM certificate chain of identity <name>, leaf first
//	/certs/<name>/tls.key   its private key, sealed (or plain PEM if allowed)
//	/certs/<name>/clients   optional: the clients a server presenting <name> accepts (ClientPolicy)
//
// CAKey, CASignatureKey, RevokedKey, CertKey, KeyKey and ClientsKey build
// the keys; ValidateName says which names are allowed. A certificate and its key are written in one transaction
// (Publish), so a Store reads them at the same revision and never pairs a
// new certificate with an old key.
//
// # Store
//
// NewStore lists the prefix and watches it. Every change is validated
// before it is swapped in atomically:
//
//   - the PEM parses; a private key is a sealed envelope that opens with
//     the Store's Keyring, or plain PEM where WithAllowPlaintextKeys allows
//     it (legacy encrypted PEM, RFC 1423, is always refused);
//   - the key matches the certificate;
//   - the certificate is inside its validity window (WithClock for tests);
//   - the chain verifies against the current CA bundle;
//   - the certificate is not on the revocation list;
//   - a new CA bundle holds only CA certificates, at least one of them
//     valid, passes the pins (below) if there are any, and still signs
//     every identity in use that is present in etcd.
//
// A refused change is logged (with its etcd key, revision and Reason, never
// key material), counted in smartroute_mtls_rejected_total{reason}, and the
// last good material stays in use. A deleted key is treated as a refused
// change too (ReasonDeleted): stale material beats none, unless
// WithDropDeleted makes deleting an identity stop serving it.
// Store.Identities and Store.CARejected show what was refused last;
// Identities holds no key material (CertificateInfo), so it is safe to
// marshal and log. Inspect judges what etcd holds with the same code,
// without starting a Store: lbprobe certs list and verify print it.
//
// Material that runs past its NotAfter while in use stays in use (nothing
// better is at hand) and is logged once at ERROR when it expires; alert on
// smartroute_mtls_cert_expiry_seconds well before that.
//
// A watch that falls behind a compaction or ends is replaced by a new list
// of the prefix and a new watch; while etcd is unreachable the last good
// material stays in use and the Store lists again with backoff.
//
// # tls.Config builders
//
// Store.ServerConfig presents the identities it is given, chosen by SNI,
// and requires client certificates signed by the current CA bundle.
// Store.ClientConfig presents an identity and verifies the server against
// the current CA bundle and the expected name. Both read the Store at every
// handshake, so one tls.Config serves through every rotation; established
// connections keep working and new handshakes use the new material. TLS
// 1.2 is the minimum, with ECDHE AEAD suites; verification is always on.
//
// # Trust that etcd write access alone cannot break
//
// Whoever can write /certs/ can, without more, add a CA to the bundle and
// mint identities every process trusts. Four things limit that:
//
//   - Least privilege in etcd: registrants (regagent) write /services/
//     only, readers (clients, servers) read /services/ and /certs/, and
//     only certificate admins write /certs/ (lbprobe etcd roles creates
//     the roles).
//   - Pinned trust anchors. WithTrustAnchors (root certificates on the
//     host, LoadTrustAnchors) accepts a bundle only if every CA in it
//     chains to an anchor; WithBundleSigners (public keys on the host,
//     LoadBundleSigners) accepts a bundle only with a valid signature at
//     <prefix>/ca.sig by one of them, not older than the signature of the
//     bundle in use (SignBundle makes it, offline; PublishCA with
//     WithBundleSignature or WithBundleSigningKey writes both in one
//     transaction). With both, either suffices. A bundle that fails is
//     refused (ReasonUnpinned), logged, counted, and the last good bundle
//     stays. Without pins NewStore warns, and each bundle loaded is logged
//     at WARN: etcd decides whom the process trusts.
//   - Revocation. The list at <prefix>/revoked (Revoke, Unrevoke) names
//     certificates by serial or keys by SPKI SHA-256 pin, each with a
//     reason and a time. Every handshake checks the peer's chain against
//     it, on both sides, and a certificate issued by a revoked CA key is
//     refused too; identities the Store serves that it lists are no longer
//     served (ReasonRevoked); Publish refuses to write them. It is
//     hot-loaded like the rest: new handshakes see it as soon as the watch
//     delivers it (a few milliseconds). Deleting the list empties it.
//   - Authorization of peers. WithAllowedClients(identity, ids...) or the
//     policy at <prefix>/<identity>/clients makes a server presenting that
//     identity accept only clients holding one of the IDs (dns:<name>,
//     uri:<uri>, spiffe://…); WithAllowedServers(name, ids...) makes a
//     client accept only servers holding one of them for that name.
//
// A refused peer's handshake fails with a plain bad_certificate alert; the
// reason (untrusted, revoked, unauthorized, no_certificate) is logged, at
// most once per certificate and reason every 10 s, and counted in
// smartroute_mtls_peer_refused_total{side,reason}.
//
// Connections already open are not affected by a handshake check. To
// close those of a revoked or no longer allowed peer, servers accept
// through NewListener (gRPC servers: ServerCredentials) and clients dial
// through DialTLS (for http.Transport.DialTLSContext): the Store tracks
// them and closes the
// ones the new revocation list or client policy refuses, and (server
// side) those that presented an identity it no longer serves, at once;
// each is counted in smartroute_mtls_connections_closed_total{side,reason}.
//
// # Sealed keys
//
// Private keys at rest are sealed in an envelope (see Keyring.Seal): a
// fresh AES-256-GCM data key per write encrypts the PEM, a key-encryption
// key (KEK) wraps the data key, and the envelope names the KEK's ID. Both
// seals authenticate the envelope header and the etcd key, so a sealed
// value cannot be moved to another identity. KEKs come from a file
// (LoadKEKFile) or an environment variable (LoadKEKEnv): 32 bytes, raw,
// hex or base64.
//
// Rotating the KEK:
//
//  1. Generate the new KEK (GenerateKEK, or 32 random bytes from a secret
//     manager) and give it an ID, e.g. "kek-2026-02".
//  2. Add it to the Keyring of every process that opens keys (every Store),
//     not as primary: NewKeyring(oldKEK, newKEK). Roll that out.
//  3. Make it the primary where keys are sealed: NewKeyring(newKEK,
//     oldKEK) for Publish and Reseal.
//  4. Run Reseal with that keyring (or lbprobe certs reseal --kek NEW=…
//     --kek OLD=…): every key sealed with the old KEK (or stored plain) is
//     sealed again with the new one. Store.Identities reports the KEKID
//     of every key in use; wait until none shows the old ID.
//  5. Remove the old KEK from every keyring and destroy it.
//
// # Rotating the CA by overlap
//
// Handshakes never fail if, at every moment, every peer trusts the CA that
// signed every certificate it may be shown. Stores in different processes
// see a change at slightly different times, so each step must reach every
// process before the next begins (Store.WaitRevision with the revision a
// Publish call returns, or the reloads metric of every process):
//
//  1. Create the new CA.
//  2. Publish a bundle holding the old and the new CA: PublishCA(old+new).
//     Every peer now trusts leaves from either CA.
//  3. Issue new leaves from the new CA and Publish them, identity by
//     identity. New handshakes use them; established connections keep
//     theirs.
//  4. When no identity in etcd is signed by the old CA any more, publish
//     the bundle with the new CA only: PublishCA(new).
//
// Removing the old CA while an identity in use still chains to it only
// through the old CA is refused: PublishCA returns an error wrapping
// ErrOrphanedIdentity, and a Store that reads such a bundle (written by
// other means) refuses the whole bundle with ReasonOrphaned and keeps the
// previous one, so the identities it serves stay both valid and trusted.
// Refusing the bundle, rather than keeping the orphaned identities on their
// old material under a bundle that no longer trusts them, keeps what a
// server presents and what its peers accept consistent. Rotate the
// remaining leaves and publish the bundle again.
//
// A leaf signed by the new CA that is written before the new CA is in the
// bundle is refused (ReasonUntrusted) and validated again when the bundle
// changes, so the order of steps 2 and 3 within one Store is forgiving;
// across processes it is not, as above.
//
// # Metrics
//
// With WithRegisterer: smartroute_mtls_reloads_total{result="ok"|"rejected"},
// smartroute_mtls_rejected_total{reason},
// smartroute_mtls_cert_expiry_seconds{identity}, the seconds until the
// certificate served for an identity expires,
// smartroute_mtls_ca_expiry_seconds{serial,subject}, the same for each CA
// of the bundle in use, smartroute_mtls_peer_refused_total{side,reason}
// and smartroute_mtls_connections_closed_total{side,reason}.
package mtls
