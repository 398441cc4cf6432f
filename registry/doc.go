// Package registry registers service instances in etcd and owns the key
// schema and value codec that every smartroute reader uses.
//
// An instance lives at
//
//	/services/<service>/<instance-id>
//
// as the JSON of Instance, attached to a lease. Register grants the lease
// (10 s by default), writes the key and keeps both alive:
//
//   - a second live registration of the same service and ID at another
//     address is refused with ErrDuplicateInstance rather than silently
//     overwritten; at the same address it is the instance's own
//     registration from before a restart, and Register takes it over at
//     once instead of waiting for its lease to expire;
//   - if the lease is lost (revoked behind its back, expired while etcd was
//     unreachable, keepalive channel closed) it grants a new lease, never
//     reusing the old one, and writes the key again, retrying with capped,
//     jittered exponential backoff until Close;
//   - if the key is deleted out of band while the lease lives, it is written
//     again;
//   - the key is watched (with clientv3.WithRequireLeader, on a gRPC stream
//     of its own and so with a fresh auth token) and, while the watch is
//     silent, etcd is asked for a member's status: a quiet, healthy cluster
//     costs no write and no warning, and a member that is cut off, has no
//     leader or is gone is noticed within a check interval and a timeout
//     (see WithEtcdHealthCheck). Every retry loop backs off; a registration
//     writes only when its key is missing or its lease was lost;
//   - its state (Registered, Lost, Closed) is observable through State,
//     WaitForStateChange and a Prometheus gauge.
//
// Update changes the registered value with an atomic read-modify-write,
// serialised with re-registration, and returns nil only once etcd holds the
// new value; Drain marks the instance draining so that clients stop sending
// it new requests; Close revokes the lease so that the key disappears at
// once.
//
// Readers decode values with Decode, which also understands the values that
// etcd's own client/v3/naming/endpoints manager writes under the same
// prefix. Key, ServicePrefix and ParseKey normalize a prefix the same way
// for writers and readers ("/prod" and "/prod/" are one prefix, "/" is the
// root).
//
// Everything works the same through etcd's gRPC proxy.
package registry
