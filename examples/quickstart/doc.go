// Quickstart shows smartroute end to end in one process, with nothing to
// install and nothing left behind:
//
//	go run ./examples/quickstart
//
// It starts an embedded etcd in a temporary directory, creates a CA and
// mTLS certificates and publishes them to etcd under /certs (private keys
// sealed with a generated key-encryption key), starts five HTTPS backends
// with mutual TLS and different latencies, registers each of them in etcd
// under a lease, and points a smart client (client.New("etcd:///api", ...))
// at the service. A few workers send a steady stream of requests while a
// table, refreshed every second, shows where the traffic goes: every
// endpoint's share of the last second, its smoothed latency, its health and
// its state.
//
// The table's columns: DELAY is the latency injected into the backend;
// SHARE its share of the answers of the last second; LATENCY their mean
// latency as the caller saw it (TLS, HTTP and scheduling included); RTT the
// client's peak-EWMA estimate, what least_latency ranks endpoints by (a slow
// answer raises it at once, fast ones lower it over seconds); HEALTH the
// active probe's verdict (an HTTPS GET with mTLS every 500ms); STATE what the
// client's table says: up, draining, out of rotation and why, or removed
// once the instance's key left etcd.
//
// Then it plays a short script, one narrated line per event:
//
//  1. the fastest backend is killed: traffic fails over, and no request
//     fails (requests in flight are retried on another endpoint);
//  2. a new backend registers: traffic reaches it within a second;
//  3. the certificates are rotated: new leaves are published to etcd and
//     picked up by servers and client without a restart, with no failed
//     request;
//  4. a backend drains: its share drops to 0 while its requests in flight
//     finish, then it deregisters.
//
// It ends by itself after -duration (40s by default) and exits 0 if no
// request failed, 1 otherwise. Flags:
//
//	-duration 40s   how long the demo runs; the script is spread over it
//	-serve          keep etcd and the backends up after the script, until
//	                Ctrl-C, and print lbprobe commands to inspect them
//	-plain          print the table once a second instead of redrawing it
//	                (the default when stdout is not a terminal)
//	-quiet          print only the narration and the summary
//	-ttl 5s         lease TTL of the backends' registrations
//	-workers 4      concurrent request loops
//	-rate 200       requests per second, all workers together
//	-v              log what the libraries log, to stderr
package main
