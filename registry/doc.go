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
//   - a second live registration of the same service and ID is refused with
//     ErrDuplicateInstance rather than silently overwritten;
//   - if the lease is lost (revoked behind its back, expired while etcd was
//     unreachable, keepalive channel closed) it grants a new lease, never
//     reusing the old one, and writes the key again, retrying with capped
//     exponential backoff until Close;
//   - if the key is deleted out of band while the lease lives, it is written
//     again;
//   - its state (Registered, Lost, Closed) is observable through State,
//     WaitForStateChange and a Prometheus gauge.
//
// Update changes the registered value in place, Drain marks the instance
// draining so that clients stop sending it new requests, and Close revokes
// the lease so that the key disappears at once.
//
// Readers decode values with Decode, which also understands the values that
// etcd's own client/v3/naming/endpoints manager writes under the same
// prefix.
package registry
