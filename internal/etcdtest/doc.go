// Package etcdtest runs real etcd servers in process for tests.
//
// Every package in smartroute that talks to etcd tests against a server
// started here with go.etcd.io/etcd/server/v3/embed: one node for ordinary
// tests, or a cluster of several members on loopback for fault tests. Nothing
// is mocked. Servers listen on free loopback ports, keep their data in a
// temporary directory and are torn down by t.Cleanup.
//
//	c := etcdtest.Start(t)                  // one node, ready in about a second
//	cli := c.Client(t)                      // closed by t.Cleanup
//
//	c3 := etcdtest.Start(t, etcdtest.WithMembers(3))
//	c3.Leader(t).Kill(t)                    // crash the leader
//	c3.Member(0).Restart(t)                 // bring one back with its data
//	c3.Stop(t); c3.Restart(t)               // a full outage, then recovery
//	c3.Compact(t)                           // compact to the current revision
//
// The helper favours speed over durability: fsync is off and the raft
// heartbeat and election timeouts are short, so fault tests converge in well
// under a second.
package etcdtest
