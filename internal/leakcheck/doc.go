// Package leakcheck fails a test binary that leaves goroutines running,
// with the patience a loaded CI machine needs.
//
// Every test package calls it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
//
// It differs from goleak.VerifyTestMain in two ways. It knows the
// goroutines that the libraries under the tests leave behind (toxiproxy's),
// so packages need not list them. And it waits up to [Patience] for the
// goroutines to end: grpc-go's Server.Stop cancels the handlers in flight
// without waiting for them, so an embedded etcd's handler may still be
// unwinding when the last test returns. On a 2-core machine shared with
// other test binaries under -race, that took longer than goleak's own half
// second of retries (an Authenticate handler, once in CI). A goroutine still
// running after Patience is a leak and fails the binary.
package leakcheck
