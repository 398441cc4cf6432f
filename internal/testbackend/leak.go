package testbackend

import "go.uber.org/goleak"

// IgnoredGoroutines are the goroutines goleak must not count against a
// test that used a Proxy: toxiproxy v2.5.0 leaves a toxic's pipe goroutine
// blocked on a channel send when a link closes while the toxic holds data
// (ToxicStub.Run under SlicerToxic.Pipe or NoopToxic.Pipe), and the link's
// reader blocked sending what it read into the stopped chain
// (ToxicLink.read under ChanWriter.Write). They belong to the library, not
// to the code under test.
func IgnoredGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	}
}
