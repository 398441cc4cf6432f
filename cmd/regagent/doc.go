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
//   - While etcd is unreachable the agent keeps retrying with capped
//     exponential backoff, also for its first connection; a lease that
//     expired during an outage is replaced by a new one when etcd returns.
//     The key of a killed predecessor (same service, ID and address) is
//     taken over at once under the new lease, not waited out; a live key
//     of the same ID at another address is not overwritten, and waited
//     for.
//   - On SIGTERM or SIGINT the instance is marked draining (clients send it
//     no new requests), stays so for --drain-period so that requests in
//     flight finish, then is deregistered, and the agent exits 0. A second
//     signal exits at once (status 1); the key then expires within the TTL,
//     as it does when the agent is killed.
//
// # Configuration
//
// Every flag can be given three ways; each fills only what the ones before
// it left unset:
//
//  1. on the command line: --service api;
//  2. in the environment, as SMARTROUTE_ and the flag name in upper case
//     with - turned into _: SMARTROUTE_SERVICE=api,
//     SMARTROUTE_ETCD_PASSWORD=...;
//  3. in the file named by --config (or SMARTROUTE_CONFIG), one flag per
//     line as "name value", with # comments (github.com/peterbourgon/ff's
//     plain format). See testdata/regagent.conf.
//
// A bad flag, environment variable or config file, a missing --service or
// --addr, or an unreadable certificate file exits 2 with a message that
// names the problem. Durations use Go syntax: 500ms, 10s, 1m.
//
// etcd:
//
//	--etcd-endpoints    comma-separated host:port or URLs (default 127.0.0.1:2379)
//	--etcd-cacert       CA bundle verifying etcd's server certificate; turns on TLS
//	--etcd-cert         client certificate (with --etcd-key), read again at every handshake
//	--etcd-key          its private key
//	--etcd-user         user name, or user:password as etcdctl takes it
//	--etcd-password     password; prefer SMARTROUTE_ETCD_PASSWORD, flags show in ps
//	--etcd-dial-timeout timeout of one attempt to reach etcd (default 5s)
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
//	--ttl               lease TTL, at least 1s, whole seconds (default 10s)
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
//	--log-format        text or json (default text); logs go to stderr
//	--log-level         debug, info, warn or error (default info)
//	--version           print the version and exit
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
// # Version
//
// --version prints the version set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/regagent
//
// or else the module version and VCS revision the Go toolchain recorded.
package main
