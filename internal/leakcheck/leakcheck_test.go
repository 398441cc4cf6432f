package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func TestSettleWaitsForAGoroutineThatEnds(t *testing.T) {
	done := make(chan struct{})
	go func() { // ends on its own, later than goleak's own retries
		time.Sleep(1500 * time.Millisecond)
		close(done)
	}()
	if err := settle(time.Now().Add(Patience)); err != nil {
		t.Fatalf("a goroutine that ended after 1.5 s was reported: %v", err)
	}
	<-done
}

func TestSettleReportsAGoroutineThatStays(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	go blockUntil(stop)
	err := settle(time.Now().Add(time.Second))
	if err == nil || !strings.Contains(err.Error(), "blockUntil") {
		t.Fatalf("a goroutine still running was not reported: %v", err)
	}
	// The summary, what a log cut to its tail keeps, names the goroutine
	// and the test that started it.
	got := summary(err.Error())
	if !strings.Contains(got, "1 goroutine(s)") || !strings.Contains(got, "leakcheck.blockUntil; created by github.com/smartroute/smartroute/internal/leakcheck.TestSettleReportsAGoroutineThatStays") {
		t.Errorf("summary:\n%s", got)
	}
}

func blockUntil(stop <-chan struct{}) { <-stop }
