package etcdtest

import "go.uber.org/goleak"

// IgnoredGoroutines lists goroutines that the libraries under the test
// cluster leave running after a clean shutdown. Pass them to goleak so that
// leak checks report only goroutines smartroute owns:
//
//	goleak.VerifyTestMain(m, etcdtest.IgnoredGoroutines()...)
//
// The etcd server and client leave none. Each member's client and peer
// traffic goes through a toxiproxy proxy, and toxiproxy v2.5.0 leaves a
// toxic's pipe goroutine blocked on a channel send when a link closes
// while it holds data (ToxicStub.Run under NoopToxic.Pipe), and, at the
// other end of the pipe, the link's reader blocked sending what it read
// into the stopped chain (ToxicLink.read under ChanWriter.Write; seen once
// in CI, after the resolver tests): those frames are ignored.
func IgnoredGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	}
}
