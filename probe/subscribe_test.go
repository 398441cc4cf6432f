package probe

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A subscriber is not called after its unsubscribe returned, even when the
// check it would hear of was being delivered to a slower subscriber.
func TestUnsubscribedIsNotCalledByTheDeliveryUnderWay(t *testing.T) {
	p := New(CheckerFunc(func(ctx context.Context, addr string) (time.Duration, error) { return time.Millisecond, nil }),
		WithInterval(time.Hour))
	defer p.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	var blocked, unsubscribed atomic.Bool
	var late atomic.Int32
	// Both subscribers block on their first call: whichever the prober
	// calls first holds the delivery while the other unsubscribes.
	hold := func() {
		if blocked.CompareAndSwap(false, true) {
			entered <- struct{}{}
			<-release
		}
	}
	p.Subscribe(func(Event) { hold() })
	unsubscribe := p.Subscribe(func(Event) {
		if unsubscribed.Load() {
			late.Add(1)
		}
		hold()
	})
	p.SetAddrs([]string{"a:1"})
	<-entered
	unsubscribe()
	unsubscribed.Store(true)
	close(release)
	// CheckNow returns after the next check, so the delivery of the
	// first one is over.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.CheckNow(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	if n := late.Load(); n > 0 {
		t.Fatalf("the subscriber was called %d times after unsubscribe returned", n)
	}
}
