// Grpc shows smartroute with gRPC: servers that register themselves in etcd,
// and a client that finds them through the etcd:///<service> resolver and
// spreads its calls with the "smartroute" balancer.
//
// Against an etcd on 127.0.0.1:2379, start a few servers, each in its own
// terminal, then the client:
//
//	go run ./examples/grpc -role server -id s1 -latency 2ms
//	go run ./examples/grpc -role server -id s2 -latency 20ms
//	go run ./examples/grpc -role client -n 200
//
// or all of it in one process:
//
//	go run ./examples/grpc -role both -n 200
//
// A server serves grpc.health.v1 and grpc.testing.TestService (UnaryCall
// answers after -latency with its ID), registers itself under
// /services/<service>/<id> with a lease, and on Ctrl-C marks itself
// draining, waits -drain, deregisters and stops gracefully. The client
// counts which server answered each call and prints the balancer's share.
//
// The client side is three lines:
//
//	client.RegisterGRPCBalancer()
//	conn, err := grpc.NewClient("etcd:///api",
//		grpc.WithResolvers(resolver.NewGRPCBuilder(etcdClient)),
//		grpc.WithDefaultServiceConfig(serviceConfig),
//		grpc.WithTransportCredentials(creds))
//
// where serviceConfig selects the balancer, its policy and probe, and a
// retry policy:
//
//	{"loadBalancingConfig": [{"smartroute": {"policy": "least_latency",
//	    "probe": {"kind": "tcp", "interval": "1s"}}}], "methodConfig": [...]}
//
// The example uses plaintext connections to stay short; see the mtls package
// for credentials.NewTLS(store.ClientConfig(...)).
package main
