// Command lbprobe diagnoses the endpoints of a smartroute service: what
// endpoints a target has, which are healthy, how fast they answer, with
// what certificates, where a client would send the next request and why,
// and what the certificate store in etcd holds.
//
// Usage:
//
//	lbprobe endpoints [flags] TARGET
//	lbprobe watch     [flags] TARGET
//	lbprobe pick      [flags] TARGET [-n N]
//	lbprobe certs list     [flags]
//	lbprobe certs verify   [flags] [NAME...]
//	lbprobe certs put      [flags] [NAME] [--cert FILE --key FILE] [--ca FILE [--ca-signature FILE]]
//	lbprobe certs reseal   [flags] --kek NEW=file:PATH --kek OLD=file:PATH
//	lbprobe certs sign     --ca FILE --signing-key FILE
//	lbprobe certs revoke   [flags] NAME | --serial SERIAL | --spki PIN  --reason TEXT
//	lbprobe certs unrevoke [flags] SERIAL|PIN
//	lbprobe etcd roles     [flags] [--dry-run]
//	lbprobe --version
//
// Flags may come before or after the arguments ("lbprobe pick etcd:///api
// -n 1000"); "--" ends the flags. Every flag has a long form with two
// dashes except -n. -h prints a command's flags with their defaults and
// environment variables.
//
// # Targets
//
//	etcd:///api                            instances registered under /services/api/ (--etcd-prefix)
//	dns:///api.example.com:443             A and AAAA records, port 443
//	dns://10.0.0.53/api.example.com:443    the same, asking the name server 10.0.0.53 (port 53 by default)
//	dns+srv:///_api._tcp.example.com       SRV records (the most preferred priority) and their targets
//	static:///10.0.0.1:443,10.0.0.2:443    a fixed list
//
// DNS names are fully qualified (no search domains); without an authority
// the name servers of /etc/resolv.conf are asked. A target that does not
// parse, or an unknown scheme, is a usage error (exit 2); a target that
// parses but resolves to nothing (no such name, no instance registered,
// etcd unreachable) is a resolution failure (exit 3).
//
// # etcd at start-up
//
// Every command that reads etcd first checks, within --etcd-dial-timeout,
// that it can: reachable, TLS as configured, credentials accepted, the
// prefix readable (writable for certs put, reseal, revoke, unrevoke). A
// failure exits 3 at once with its cause and fix on one line: "etcd
// unreachable: no answer from http://10.0.0.5:2379 within 5s (connection
// refused)", "etcd's certificate at ... is signed by an unknown authority
// (issuer ...)", "etcd at ... requires a client certificate and none was
// given", "etcd at ... refused the client certificate", "etcd at ... expects
// TLS and the client spoke plain HTTP", "etcd at ... speaks plain HTTP, not
// TLS", "etcd refused user "root": authentication failed, wrong user name
// or password", "etcd has authentication on and the request named no
// user", "etcd user "ci" (roles: smartroute-reader) may not read /certs/*:
// permission denied; grant the user a role with read on /certs/...". With
// -o json the same error is the JSON document on stdout, with its cause
// (unreachable, no_answer, tls_unknown_authority, tls_server_certificate,
// tls_client_certificate, tls_expected, tls_unsupported, auth_failed,
// auth_required, permission_denied). watch reports the failure as an
// "error" event and keeps trying.
//
// # lbprobe endpoints TARGET
//
// Resolves TARGET, runs --count checks against every endpoint (--interval
// apart; the endpoints in parallel) and prints one row per endpoint,
// sorted by address, then two footer lines: the endpoint the --policy
// would pick now with the reason, and "TARGET: H of N endpoints healthy
// (the check)". An endpoint is healthy when more than half of its checks
// succeeded. The pick is asked of a real smartroute client (package
// client, Client.Pick) whose table holds what lbprobe measured (each
// endpoint's health, and its mean RTT as the probe RTT the latency
// estimate starts from); no request is sent.
//
// Columns, in order (a cell with nothing to say is "-"):
//
//	ADDR       host:port
//	ZONE       the endpoint's zone
//	WEIGHT     its weight (1 when unset)
//	STATE      up, or draining (it gets no new requests)
//	LABELS     its labels, k=v comma-separated (canary=true)
//	HEALTH     healthy or unhealthy
//	RTT_MIN    smallest RTT of the successful checks (0.32ms, 51.7ms, 1.21s)
//	RTT_AVG    their mean
//	RTT_P99    their 99th percentile (nearest rank; the maximum below 100 checks)
//	LOSS       share of failed checks, 0% to 100%
//	TLS        "ok Nd" (verified, N whole days to the leaf's expiry), or why
//	           the handshake failed: untrusted, name_mismatch, expired,
//	           not_yet_valid, invalid, failed; "-" without TLS
//	PICK       yes for the endpoint the policy picked
//	then, for etcd targets:
//	KEY        the etcd key of the instance
//	REV        the key's mod revision
//	LEASE_TTL  the lease's seconds left / granted (7s/10s), expired, none, or ? if unknown
//	for dns targets:
//	RECORD     A or AAAA
//	NAME       the name queried
//	TTL        the record's TTL
//	for dns+srv targets: RECORD (SRV), NAME, TTL and
//	PRIO       the SRV priority
//	with -o wide:
//	ID, VERSION  the instance's ID and version (etcd)
//	CHECKS, FAILED  the checks made and failed
//	TLS_SUBJECT  the leaf's subject
//	and last:
//	NOTE       why the endpoint cannot be picked (draining, unhealthy: <error>,
//	           ejected, circuit breaker open (--max-rt), labels...), the failures
//	           of an endpoint still healthy,
//	           and a TLS error the check did not report, separated by "; "
//
// The TLS column is filled for --check https and tls, and for the other
// checks with --tls (which also makes the grpc check use TLS): one
// handshake with the --tls-* material, verified against --check-cacert (default:
// the system roots) and --check-server-name (default: the host of a dns:///
// target, else the endpoint's address).
//
// # lbprobe pick TARGET -n N
//
// Resolves and probes TARGET as endpoints does, then asks the policy for
// N picks in a row (default 1000), as a client with no request in flight
// would make them, and prints how they spread:
//
//	ADDR     host:port
//	ZONE     its zone
//	WEIGHT   its weight
//	STATE    up or draining
//	LABELS   its labels
//	HEALTH   healthy or unhealthy
//	RTT_AVG  mean RTT of the successful checks
//	(-o wide: RTT_MIN, RTT_P99, LOSS)
//	PICKS    how many of the N picks chose it
//	SHARE    PICKS / N, as a percentage with one decimal
//	NOTE     why it cannot be picked
//
// followed by "N of M picks failed: <why>" when some failed, and "TARGET:
// N picks under POLICY; H of M endpoints healthy (the check)". Under
// least_latency a slow endpoint gets nothing while faster ones are
// healthy; under round_robin every eligible endpoint gets its turn.
//
// # lbprobe watch TARGET
//
// Follows TARGET until SIGINT or SIGTERM and prints one line per event:
//
//	2026-02-01T10:00:00.000Z  added      10.0.0.1:8443  state=up weight=1 zone=eu-1a key=/services/api/i1 rev=40 lease=694d7c1e2a3b4c5d
//	2026-02-01T10:00:00.012Z  health     10.0.0.1:8443  unknown->healthy rtt=0.41ms
//	2026-02-01T10:03:10.500Z  health     10.0.0.1:8443  healthy->unhealthy error: dial tcp 10.0.0.1:8443: connect: connection refused
//	2026-02-01T10:03:12.001Z  changed    10.0.0.1:8443  state up->draining state=draining weight=1 ...
//	2026-02-01T10:03:22.001Z  removed    10.0.0.1:8443  state=draining weight=1 ...
//	2026-02-01T10:04:00.000Z  error      -              list /services/api/: etcd did not answer within 5s: ...
//	2026-02-01T10:04:07.000Z  recovered  -              resolving works again
//
// The fields are: the time (UTC, milliseconds), the event, the address
// ("-" for events of the target), and details. Events: "added" (first for
// every endpoint of the current set, then for each new one), "removed",
// "changed" (state, weight, zone or labels; the changes first, as
// "what old->new"), "health" (the checks changed the verdict after --rise
// successes or --fall failures in a row, as a client's prober decides;
// unknown, healthy, unhealthy), "error" (resolving failed; the last good
// set stays; printed once per distinct error) and "recovered". DNS
// endpoints show record=, name= and ttl= instead of key=, rev= and lease=;
// labels= follows zone=, and -o wide adds id= and version=. Interrupted
// before the target ever resolved (etcd never answered), watch exits 3.
// --interval is the time between two checks of an endpoint (1s by default
// for watch).
//
// # lbprobe certs list
//
// Reads the certificate store under --certs-prefix (/certs) and judges it
// with the mtls package's own validation (mtls.Inspect: the code a
// service's mtls.Store runs, so that list, verify and the services never
// disagree), then prints one row per certificate of the CA bundle (NAME
// "ca") and per identity:
//
//	NAME       ca, or the identity name (/certs/<name>/)
//	SUBJECT    the leaf's subject
//	SANS       its DNS names, IP addresses, URIs and e-mail addresses, comma-separated
//	ISSUER     its issuer
//	NOT_AFTER  its expiry date (UTC)
//	DAYS       whole days left (negative once expired)
//	KEY        sealed:<KEK ID>, plain, missing or malformed; "(not opened)"
//	           when no KEK was given to open it and match it against the
//	           certificate
//	REV        the etcd revision of the identity (its newest key)
//	(-o wide: SERIAL, SHA256, SPKI_SHA256)
//	STATUS     ok, or the reason a Store refuses it (the mtls.Reason values),
//	           then ": " and why: expired, not_yet_valid, untrusted (does not
//	           chain to the CA bundle), revoked, key_mismatch, incomplete (a
//	           certificate without its key or the reverse), malformed (PEM,
//	           envelope or data after the last PEM block), plain_key (without
//	           --allow-plaintext-keys), unseal (the KEKs cannot open the key);
//	           for the CA rows also not_ca (a leaf in the bundle), unpinned
//	           (refused by --trust-anchors or --ca-signers), orphaned
//
// Without a KEK a sealed key is checked for form only (a value that is not
// an envelope is malformed either way). With --trust-anchors or --ca-signers
// the bundle is judged as services pinned with mtls.WithTrustAnchors or
// mtls.WithBundleSigners judge it. A footer names the revocation list's size
// and any refused bundle or list.
//
// # lbprobe certs verify [NAME...]
//
// As list, with the private keys opened with the KEKs given (required unless
// every key is plain PEM and --allow-plaintext-keys is set), for each NAME
// (default: every identity stored): ok, or the Store's reason and error
// ("missing" for a name that is not stored).
//
// # lbprobe certs put [NAME]
//
// With --ca FILE, publishes the CA bundle (mtls.PublishCA, which refuses a
// bundle that would orphan an identity in use), with its signature from
// --ca-signature FILE (made by certs sign) or --ca-signing-key FILE (signed
// here) in the same transaction; with --trust-anchors or --ca-signers a
// bundle pinned services would refuse is refused and nothing is written.
// With NAME --cert FILE --key FILE, validates the pair against the CA bundle
// and the revocation list in etcd and writes it in one transaction, the
// private key sealed with the primary KEK (mtls.Publish); a plain PEM key is
// written only without a KEK and with --allow-plaintext-keys. It prints the
// keys written and the revision.
//
// # lbprobe certs reseal
//
// Seals every private key that is not sealed with the primary KEK (the
// first given) again with it (mtls.Reseal): step 4 of a KEK rotation. Give
// the new KEK first and the old ones after. It prints how many keys it
// resealed and the keys left on another KEK; exit 0 when none is left, 1
// otherwise.
//
// # lbprobe certs sign
//
// Signs the CA bundle --ca with --signing-key (an Ed25519, ECDSA or RSA
// private key, PEM) for <--certs-prefix>/ca and prints the detached
// signature (mtls.BundleSignature). Reads no etcd: run it where the signing
// key is kept.
//
// # lbprobe certs revoke [NAME], certs unrevoke SERIAL|PIN
//
// revoke adds to <--certs-prefix>/revoked (mtls.Revoke) the certificate
// stored for NAME (by serial), or --serial SERIAL, or every certificate of a
// key --spki PIN, with --reason. Services refuse it in new handshakes on
// both sides within milliseconds and close the connections they track
// (mtls NewListener, DialTLS). unrevoke removes an entry.
//
// # lbprobe etcd roles
//
// Creates the least-privilege etcd roles, or brings them back to exactly
// these permissions (run as root):
//
//	smartroute-registrant   readwrite /services/           regagent, registry.Register
//	smartroute-reader       read /services/ and /certs/    resolvers, mtls.Store, read-only lbprobe commands
//	smartroute-cert-admin   readwrite /certs/              lbprobe certs put/revoke/reseal, mtls.Publish
//
// --etcd-prefix and --certs-prefix change the prefixes, --role-prefix the
// names; --dry-run prints the equivalent etcdctl commands and connects to
// nothing. Users are created and granted roles with etcdctl. A service that
// registers and serves mTLS needs registrant and reader.
//
// # Flags
//
// etcd (every command that reads etcd; named as regagent's):
//
//	--etcd-endpoints list      comma-separated host:port or http(s):// URLs, without credentials (127.0.0.1:2379)
//	--etcd-cacert file         CAs of etcd's server certificate; turns on TLS
//	--etcd-cert file           client certificate (with --etcd-key)
//	--etcd-key file            its private key
//	--etcd-user name           user name (user:password is accepted, with a warning)
//	--etcd-password string     password (prefer --etcd-password-file or LBPROBE_ETCD_PASSWORD: flags show in ps)
//	--etcd-password-file file  file holding the password (one trailing newline ignored)
//	--etcd-dial-timeout dur    bound of the start-up check and of each etcd request (5s)
//
// Resolving (endpoints, pick, watch):
//
//	--etcd-prefix string       registry prefix (/services)
//	--resolve-timeout dur      wait for the first endpoint set at most this long (5s)
//
// Checking (endpoints, pick, watch):
//
//	--check kind               tcp|http|https|grpc|tls (http)
//	--count n                  checks per endpoint, 1 to 10000 (5; not watch)
//	--interval dur             between two checks of an endpoint (100ms; watch: 1s)
//	--timeout dur              of one check (1s)
//	--path string              path of the http(s) checks (/)
//	--check-grpc-service string      service asked about by the grpc check ("" = the server)
//	--tls                      fill the TLS column (and use TLS for grpc)
//	--check-cacert file              CAs verifying the endpoints (system roots)
//	--check-cert file            client certificate (with --check-key)
//	--check-key file             its private key
//	--check-server-name string   name verified (host of a dns:/// target, else the address)
//	--rise n, --fall n         watch only: successes and failures in a row that change health (2, 3)
//
// Picking (endpoints, pick):
//
//	--policy name              least_latency|p2c|round_robin|weighted_round_robin|least_request|consistent_hash (least_latency)
//	--max-rt dur               judge each endpoint's checks as a client's slow-call endpoint breaker
//	                           with this max RT would (client.WithOverload): open when half of the
//	                           --count checks were slower (failed checks count as not slow); an
//	                           endpoint whose breaker is open is not picked (0: off)
//	-n n                       pick only: number of picks (1000)
//
// Certificates (certs):
//
//	--certs-prefix string      store prefix (/certs)
//	--kek ID=file:PATH|ID=env:VAR   a key-encryption key (32 bytes raw, hex or base64);
//	                           repeat for several: the first seals, every one opens
//	--kek-file file            one KEK from a file (with --kek-id), before those of --kek
//	--kek-env name             one KEK from an environment variable instead
//	--kek-id string            the ID of --kek-file's or --kek-env's KEK
//	--allow-plaintext-keys     accept (and for put, write) plain PEM keys
//	--trust-anchors file       judge the CA bundle as services pinned to these root CAs
//	--ca-signers file          judge it as services pinned to these signing keys (PEM public keys)
//	--cert, --key, --ca file   put only: the files to upload
//	--ca-signature file        put only: the bundle's signature made by certs sign
//	--ca-signing-key file      put only: sign the bundle here instead
//	--serial, --spki, --reason revoke only
//
// Output and configuration (every command):
//
//	-o, --output format        table (default), wide (more columns) or json; errors are JSON too
//	--json                     as -o json
//	--config file              config file: one "flag value" per line, # comments
//	--version                  (before the command) print the version and exit
//
// With -o json, a failure writes {"error": "...", "cause": "...",
// "exit_code": N} on stdout (cause only for etcd's failures) besides the
// line on stderr, so that a program reading stdout sees it.
//
// Every flag not given on the command line is read from the environment
// variable LBPROBE_<FLAG> (upper case, "-" as "_"): LBPROBE_ETCD_ENDPOINTS,
// LBPROBE_ETCD_PASSWORD, LBPROBE_CHECK, LBPROBE_OUTPUT... except -n, -o,
// --json, --cert, --key, --ca, --ca-signature, --ca-signing-key, --serial,
// --spki and --reason, which say what one invocation does; then from the
// --config file (or LBPROBE_CONFIG), whose lines for flags of other commands
// are skipped, so that one file serves every command. The command line wins
// over the environment, the environment over the file. The SMARTROUTE_
// variables lbprobe read before 0.2, shared with regagent, are no longer
// read; lbprobe warns when one is set and names its LBPROBE_ successor.
// A URL in --etcd-endpoints with credentials is refused.
//
// # JSON
//
// Field names are stable. endpoints writes one object:
//
//	target       the canonical target
//	check        the check kind
//	count        checks per endpoint
//	policy       the policy asked
//	pick         the address picked ("" when none could be)
//	pick_reason  why (omitted when none)
//	pick_error   why no endpoint could be picked (omitted otherwise)
//	healthy      the number of healthy endpoints
//	endpoints    one object per endpoint, sorted by address:
//	  addr, zone, weight, labels ({} when none), state ("up"|"draining"),
//	  healthy (bool),
//	  checks, failures, loss (0..1),
//	  rtt_min_ms, rtt_avg_ms, rtt_p99_ms (null when no check succeeded),
//	  error (the last failed check's error, omitted if none),
//	  tls (omitted without TLS): verified, version, subject, not_after,
//	    days_left, problem (as in the TLS column), error,
//	  eligible (may take new requests), why (why not, or a panic-mode note),
//	  breaker (with --max-rt: "closed" or "open"; omitted otherwise),
//	  picked (bool),
//	  source: kind ("etcd"|"dns-a"|"dns-aaaa"|"dns-srv"|"static");
//	    etcd: key, id, version, revision, lease (hex), lease_ttl_s,
//	    lease_granted_ttl_s, lease_error;
//	    DNS: name, record ("A"|"AAAA"|"SRV"), ttl_s, priority (SRV).
//
// pick writes {target, check, count, policy, n, failed, error, healthy,
// picks: [{addr, zone, weight, labels, state, healthy, rtt_avg_ms,
// rtt_min_ms, rtt_p99_ms, loss, picks, share (0..1), eligible, why}]}.
// watch writes one object per line: {time, event, addr, state, zone,
// weight, labels, health, previous, rtt_ms, changes, error, source}
// (fields without a value omitted). certs list and verify write {prefix,
// pinned, ca: [rows], ca_error, identities: [rows], revoked: [{serial,
// spki_sha256, reason, revoked_at}], revoked_error} where a row is {name,
// subject, sans, issuer, serial, not_before, not_after, days_left, sha256,
// spki_sha256, key ("sealed"|"plain"|"missing"|"malformed"), kek_id,
// key_checked, revision, valid, status, error}. certs put writes {prefix,
// ca_revision, ca_signed, name, revision, kek_id}; reseal {prefix, primary,
// resealed, remaining, errors}; revoke and unrevoke {prefix, entry,
// removed, revision}; etcd roles [{name, who, permissions: [{prefix,
// type}]}].
//
// # Exit codes
//
// One table for lbprobe and regagent:
//
//	0  success: every endpoint healthy, every identity valid, done
//	1  some endpoints unhealthy or some identities invalid (lbprobe)
//	2  usage error: a bad flag, argument, environment variable or config file
//	3  etcd failure (unreachable, TLS, authentication, permission) or the
//	   target could not be resolved; also after SIGTERM if etcd never answered
//	4  none healthy: no endpoint healthy, no pick, no identity valid, or a
//	   write refused
//	5  other failure: interrupted, --listen taken, output not written, a
//	   second signal
//
// Failures print one line on stderr; a usage error is followed by the usage
// line. certs reseal exits 1 when keys are left on another KEK; certs put
// exits 4 when mtls refuses what it would write.
//
// Tables are aligned with spaces and never coloured, so they read the same
// in a terminal, a pipe and a file.
package main
