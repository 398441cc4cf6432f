package resolver_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// BenchmarkEtcdPropagation measures how long a registry write takes to
// reach a resolver's update: from the start of Registration.Update (its
// etcd transaction included) to the update callback seeing the new value,
// writer and resolver on separate clients of a single-node etcd on
// loopback. It reports the median and 99th percentile as p50-ms and
// p99-ms.
func BenchmarkEtcdPropagation(b *testing.B) {
	c := etcdtest.Start(b)
	writer, watcher := c.Client(b), c.Client(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	inst := registry.Instance{Service: "api", Addr: "127.0.0.1:8001", Weight: 1}
	reg, err := registry.Register(ctx, writer, inst, registry.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close(context.Background())
	r, err := resolver.NewEtcd(watcher, "api", resolver.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	weights := make(chan uint32, 1024)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.Watch(wctx, func(s resolver.State) {
			if s.Err == nil && len(s.Endpoints) == 1 {
				weights <- s.Endpoints[0].Weight
			}
		})
	}()
	defer func() { stop(); <-done }()
	waitWeight := func(w uint32) {
		for {
			select {
			case got := <-weights:
				if got == w {
					return
				}
			case <-ctx.Done():
				b.Fatalf("weight %d never delivered", w)
			}
		}
	}
	waitWeight(1)

	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		inst.Weight = uint32(i + 2)
		start := time.Now()
		if err := reg.Update(ctx, func(i *registry.Instance) { i.Weight = inst.Weight }); err != nil {
			b.Fatal(err)
		}
		waitWeight(inst.Weight)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
