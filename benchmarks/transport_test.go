package benchmarks

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

// BenchmarkTransport compares the smartroute client with a bare
// http.Transport, both sending GETs from every core to one loopback backend
// that answers at once: what routing adds to a request. Both start from the
// same transport settings (baseTransport).
//
// Figures: ns/op (wall time per request across all goroutines), req/s,
// ms-p50 and ms-p99 of single requests, allocs/op.
func BenchmarkTransport(b *testing.B) {
	be := testbackend.MustHTTP(b, testbackend.WithName("b0"))
	b.Run("impl=bare", func(b *testing.B) {
		tr := baseTransport()
		defer tr.CloseIdleConnections()
		benchTransport(b, target{rt: tr, url: be.URL() + "/"})
	})
	b.Run("impl=smartroute", func(b *testing.B) {
		c := newClient(b, []string{be.Addr()}, client.DefaultPolicy)
		defer c.Close()
		benchTransport(b, target{rt: c, url: "http://" + service + "/"})
	})
}

func benchTransport(b *testing.B, tg target) {
	ctx := context.Background()
	// Warm up: open the connections the parallel loop will reuse.
	for i := range 64 {
		if get(ctx, tg, int64(i)) < 0 {
			b.Fatal("warm-up request failed")
		}
	}
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		var i int64
		for pb.Next() {
			t0 := time.Now()
			if get(ctx, tg, i) < 0 {
				b.Error("request failed")
				return
			}
			local = append(local, time.Since(t0))
			i++
		}
		mu.Lock()
		all = append(all, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	slices.Sort(all)
	b.ReportMetric(ms(percentile(all, 0.50)), "ms-p50")
	b.ReportMetric(ms(percentile(all, 0.99)), "ms-p99")
}

var _ http.RoundTripper = (*client.Client)(nil)
