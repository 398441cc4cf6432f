// Package resolver finds the endpoints of a service and follows their
// changes: from etcd (the instances the registry package writes), from DNS
// (A/AAAA round-robin sets and SRV records) or from a static list.
//
// Every Resolver delivers the complete endpoint set on every change, first
// the current set, until its context ends. A failed refresh is delivered as
// a State whose Err is set and whose Endpoints are the last good set: stale
// beats empty.
//
// Targets are written as gRPC writes them:
//
//	etcd:///api                              instances under /services/api/
//	dns:///api.example.com:443               A and AAAA records, port 443
//	dns://10.0.0.53/api.example.com:443      the same, asking 10.0.0.53
//	dns+srv:///_api._tcp.example.com         SRV records and their targets
//	static:///10.0.0.1:443,10.0.0.2:443      a fixed list
//
// Parse checks a target, New builds its Resolver:
//
//	r, err := resolver.New("etcd:///api", resolver.WithEtcdClient(cli))
//	err = r.Watch(ctx, func(s resolver.State) { ... })
//
// For gRPC, NewGRPCBuilder returns a grpc resolver.Builder for the etcd
// scheme (NewGRPCBuilderForScheme for the others) to pass to
// grpc.WithResolvers; RegisterGRPC registers the etcd and dns+srv builders
// process-wide. Nothing is registered by importing the package. The gRPC
// endpoints carry the Endpoint in their attributes; EndpointFromGRPC reads
// it back, for balancers.
//
// # Metrics
//
// With WithRegisterer, resolvers export, labelled by kind (etcd, dns,
// dns+srv, static) and target (the canonical target string; a process
// resolves a handful of targets, so the cardinality stays small, and
// nothing is labelled per endpoint):
//
//	smartroute_resolver_updates_total          sets delivered after a change
//	smartroute_resolver_errors_total           failures reported with the last good set
//	smartroute_resolver_decode_failures_total  etcd values skipped (once per key and revision), garbage DNS answers
//	smartroute_resolver_endpoints              endpoints in the set last delivered
//	smartroute_resolver_relists_total          etcd re-lists, by reason (compacted, watch_ended, unreachable)
package resolver
