// Regagent shows how to run smartroute's registration sidecar,
// cmd/regagent, beside a service that knows nothing about etcd.
//
// This program is the service: a small HTTP server that answers
// "hello from <name>" on / and reports its health on /healthz, and whose
// health can be flipped (POST /healthz/fail, POST /healthz/ok) to watch the
// sidecar react. With an etcd listening on 127.0.0.1:2379:
//
//	go run ./examples/regagent -addr 127.0.0.1:8080
//	go run ./cmd/regagent --config examples/regagent/testdata/regagent.conf
//	go run ./examples/httpclient -service api
//
// regagent registers the service under /services/api/hello-1 once its
// health check has passed twice, takes the key away after three failed
// checks (curl -X POST 127.0.0.1:8080/healthz/fail) and puts it back when
// the check recovers; on Ctrl-C (SIGINT or SIGTERM) it marks the instance
// draining for --drain-period, then deregisters it. README.md in this
// directory walks through it; testdata/regagent.conf is a commented sample
// configuration.
package main
