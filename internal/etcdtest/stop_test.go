package etcdtest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/smartroute/smartroute/internal/etcdtest"
)

// Stopping a member while requests are in its handlers must not crash the
// test binary. A hard stop (Kill, Cluster.Stop and every test's cleanup)
// closed etcd's backend while its gRPC server still ran handlers: an
// Authenticate still checking a password then read a closed bolt
// transaction and panicked (a nil pointer in bbolt's Tx.Bucket), failing
// whichever package was stopping a cluster with auth on at that moment.
// Without the handler gate, this test panicked within its first rounds.
func TestStopWithRequestsInFlightDoesNotCrash(t *testing.T) {
	const password = "s3cret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: password}))
	cli := c.Client(t)
	for round := range 8 {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					cli.Authenticate(ctx, "root", password) // fails once the member stops
					if i == 0 {
						started <- struct{}{}
					}
				}
			}()
		}
		// Stop while authentications are under way.
		for range 8 {
			<-started
		}
		c.Stop(t)
		cancel()
		wg.Wait()
		if round < 7 {
			c.Restart(t)
		}
	}
}
