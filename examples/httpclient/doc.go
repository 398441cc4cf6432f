// Httpclient is the smallest useful smartroute program: an http.Client whose
// requests go to the instances of a service registered in etcd, each to the
// endpoint that will answer it fastest.
//
//	go run ./examples/httpclient -etcd 127.0.0.1:2379 -service api -n 20
//
// It sends -n GET requests to http://<service><path> (the URL names the
// service, not a host: the client picks the endpoint), prints each answer's
// status and latency, then the client's endpoint table: health, latency
// estimate and the requests each endpoint took. Register a few instances
// first, with the registry package, with regagent (see examples/regagent),
// or by hand:
//
//	etcdctl put /services/api/a '{"service":"api","id":"a","addr":"127.0.0.1:8081"}'
package main
