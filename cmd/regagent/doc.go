// Regagent is the smartroute registration sidecar. It runs beside one
// service instance and keeps that instance's registration in etcd true: the
// instance is registered while its local health check passes, deregistered
// when the check fails, and drained before it goes away.
//
// Usage:
//
//	regagent --service NAME --addr HOST:PORT [flags]
//
// For example, beside an HTTP service listening on 10.0.0.7:8080 whose
// health endpoint is /healthz:
//
//	regagent --etcd-endpoints https://etcd-0:2379,https://etcd-1:2379 \
//	    --etcd-cacert /etc/etcd/ca.pem --etcd-cert agent.pem --etcd-key agent-key.pem \
//	    --service api --addr 10.0.0.7:8080 --zone eu-west-1a --label canary=true \
//	    --check http --check-target http://127.0.0.1:8080/healthz
//
// # What it does
//
// The instance is written at /services/<service>/<id> (the registry
// package's key schema and JSON value) under a lease of --ttl:
//
//   - It is registered once the local check has passed --rise times in a
//     row, and not before.
//   - It is deregistered (its lease revoked, so the key goes at once) after
//     --fall failed checks in a row, and registered again under a new lease
//     when the check recovers.
//   - At start-up, whatever the local check says, it checks within
//     --etcd-dial-timeout that etcd can be used: reachable, TLS as
//     configured, the credentials accepted, the instance's key writable.
//     A failure is reported at once by its cause and fix (on stderr, on
//     /healthz and in smartroute_regagent_register_failures_total): "etcd
//     unreachable: no answer from http://10.0.0.5:2379 within 5s
//     (connection refused)", "etcd's certificate ... is signed by an
//     unknown authority", "etcd at ... requires a client certificate and
//     none was given", "etcd at ... expects TLS and the client spoke plain
//     HTTP" (and the reverse), "etcd refused user "agent": authentication
//     failed", "etcd has authentication on and the request named no user",
//     "etcd user "agent" (roles: ...) may not write /services/api/...".
//   - While etcd is unreachable the agent keeps retrying with capped
//     exponential backoff, also for its first connection; a lease that
//     expired during an outage is replaced by a new one when etcd returns.
//     The key of a killed predecessor (same service, ID and address) is
//     taken over at once under the new lease, not waited out; a live key
//     of the same ID at another address is not overwritten, and waited
//     for.
//   - On SIGTERM or SIGINT the instance is marked draining (clients send it
//     no new requests), stays so for --drain-period so that requests in
//     flight finish, then is deregistered, and the agent exits 0 (3 when
//     etcd never answered). A second signal exits at once (status 5); the
//     key then expires within the TTL, as it does when the agent is killed.
//
// # Configuration
//
// Every flag can be given three ways; each fills only what the ones before
// it left unset:
//
//  1. on the command line: --service api;
//  2. in the environment, as REGAGENT_ and the flag name in upper case
//     with - turned into _: REGAGENT_SERVICE=api,
//     REGAGENT_ETCD_PASSWORD=...;
//  3. in the file named by --config (or REGAGENT_CONFIG), one flag per
//     line as "name value", with # comments (github.com/peterbourgon/ff's
//     plain format). See testdata/regagent.conf.
//
// --version is read from the command line only: no variable or file line
// turns the sidecar into a program that prints its version and exits.
// The SMARTROUTE_ variables that regagent and lbprobe both read before
// version 0.2 are no longer read (a variable meant for one changed the
// other); regagent warns when one is set and names its REGAGENT_ successor.
//
// Credentials: a URL in --etcd-endpoints with a user or password is
// refused (the password is not repeated); give the password with
// --etcd-password-file or REGAGENT_ETCD_PASSWORD, which ps does not show.
// --etcd-password and --etcd-user user:password on the command line work,
// with a warning. Passwords are never logged.
//
// A bad flag, environment variable or config file, a missing --service or
// --addr, or an unreadable certificate file exits 2 with a message that
// names the problem. Durations use Go syntax: 500ms, 10s, 1m.
//
// etcd:
//
//	--etcd-endpoints    comma-separated host:port or http(s):// URLs, without credentials (default 127.0.0.1:2379)
//	--etcd-cacert       CA bundle verifying etcd's server certificate; turns on TLS
//	--etcd-cert         client certificate (with --etcd-key), read again at every handshake
//	--etcd-key          its private key
//	--etcd-user         user name (user:password is accepted, with a warning)
//	--etcd-password     password; prefer --etcd-password-file or REGAGENT_ETCD_PASSWORD, flags show in ps
//	--etcd-password-file file holding the password (one trailing newline ignored)
//	--etcd-dial-timeout bound of the start-up check and of one attempt to reach etcd (default 5s)
//	--etcd-prefix       registry key prefix (default /services)
//
// The instance:
//
//	--service           service name (required)
//	--addr              host:port clients connect to (required)
//	--id                instance ID, unique within the service (default: --addr)
//	--zone              zone (failure domain)
//	--weight            relative weight, 1 to 10000 (default 1)
//	--instance-version  deployed version, informational
//	--label k=v         label; repeatable, or comma-separated pairs
//	--ttl               lease TTL in whole seconds (1500ms is refused), at least 1s (default 10s)
//
// The local health check (the probe package):
//
//	--check             http, https, tcp, grpc or tls (default tcp)
//	--check-target      a URL for http and https, host:port otherwise (default: from --addr)
//	--check-interval    time between checks (default 5s)
//	--check-timeout     timeout of one check, at most the interval (default 1s)
//	--rise              successes in a row before registering (default 2)
//	--fall              failures in a row before deregistering (default 3)
//	--check-cacert      CAs verifying the service's certificate (default: system roots)
//	--check-cert        client certificate for a service that asks for one (with --check-key)
//	--check-key         its private key
//	--check-server-name name verified against the service's certificate (default: target host)
//	--check-grpc-service service asked about by the grpc check (default: the whole server)
//	--check-tls         use TLS for the grpc check (https and tls always do)
//
// An http check passes on a status from 200 to 399; a grpc check on
// SERVING from grpc.health.v1; a tls check on a verified handshake.
// Certificates are always verified.
//
// Operations:
//
//	--drain-period      how long the instance stays draining before it is deregistered (default 10s)
//	--listen            address of the /metrics and /healthz server; off turns it off (default :9469)
//	--config            config file, see above
//	--log-format        text or json (default text); logs go to stderr, durations
//	                    and states as text ("ttl":"10s", "to":"healthy")
//	--log-level         debug, info, warn or error (default info)
//	--version           print the version and exit (command line only)
//
// # Endpoints
//
// /healthz answers 200 while the instance is registered and not draining,
// and 503 otherwise, with a one-line reason ("not registered: local check
// failing: ...", "registration lost, registering again: ...", "draining:
// ..."). It suits a readiness probe.
//
// /metrics serves Prometheus text from the agent's own registry: the Go
// runtime and process collectors, the registry package's
// smartroute_registry_* series, the probe package's smartroute_probe_*
// series, and
//
//	smartroute_regagent_build_info{version,goversion}  always 1
//	smartroute_regagent_registered                     1 while the key is written under a live lease
//	smartroute_regagent_check_healthy                  1 while the local check passes
//	smartroute_regagent_draining                       1 from the shutdown signal to deregistration
//	smartroute_regagent_register_failures_total        failed attempts to connect or register
//	smartroute_regagent_deregistrations_total{reason}  reason: unhealthy or shutdown
//
// # Exit codes
//
// One table for regagent and lbprobe:
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
// regagent exits 0 after draining on SIGTERM, 2 for bad configuration, 3
// when SIGTERM comes before etcd ever answered, 5 when --listen is taken or
// on a second signal.
//
// # Version
//
// --version prints the version set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/regagent
//
// or else the module version and VCS revision the Go toolchain recorded.
package main
