package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

func TestDbgCapacity(t *testing.T) {
	for _, scn := range []string{"capacity_reports"} {
		var sc routingScenario
		for _, s := range routingScenarios() {
			if s.name == scn {
				sc = s
			}
		}
		var queued, arrived atomic.Int64
		bptr := make([]*testbackend.HTTP, sc.backends)
		var idx atomic.Int64
		mk := func() testbackend.Option {
			i := int(idx.Add(1) - 1)
			return testbackend.WithMiddleware(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					arrived.Add(1)
					if bptr[i].InFlight() >= int64(sc.capacity) {
						queued.Add(1)
					}
					h.ServeHTTP(w, r)
				})
			})
		}
		e := &env{bs: make([]*testbackend.HTTP, sc.backends), lat: make([]atomic.Int64, sc.backends), tailP: make([]float64, sc.backends), tailK: make([]float64, sc.backends), failing: make([]atomic.Bool, sc.backends), capacity: sc.capacity, inFlight: make([]atomic.Int64, sc.backends)}
		for i := range e.bs {
			opts := []testbackend.Option{testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithCapacity(sc.capacity), mk()}
			if sc.reports {
				opts = append(opts, testbackend.WithLoadReport())
			}
			e.bs[i] = testbackend.MustHTTP(t, opts...)
			bptr[i] = e.bs[i]
		}
		res := map[client.Policy][]string{}
		for round := 0; round < 3; round++ {
			for _, pol := range []client.Policy{"", client.LeastLatency, client.RoundRobin} {
				sc.setup(e)
				targets := make([]target, sc.clients)
				var cs []*client.Client
				for i := range targets {
					if pol == "" {
						o := e.oracle()
						targets[i] = target{rt: o, url: "http://api/"}
					} else {
						c := newClient(t, e.addrs(), pol)
						cs = append(cs, c)
						targets[i] = target{rt: c, url: "http://api/"}
					}
				}
				queued.Store(0)
				arrived.Store(0)
				samples, _ := drive(context.Background(), targets, 1, 3600, nil)
				for _, c := range cs {
					c.Close()
				}
				var lat []time.Duration
				for _, s := range samples[len(samples)/6:] {
					if s.backend >= 0 {
						lat = append(lat, s.latency)
					}
				}
				slices.Sort(lat)
				res[pol] = append(res[pol], fmt.Sprintf("q%.1f%% mean %.2f p99 %.2f", 100*float64(queued.Load())/float64(arrived.Load()), ms(mean(lat)), ms(percentile(lat, 0.99))))
			}
		}
		for _, pol := range []client.Policy{"", client.LeastLatency, client.RoundRobin} {
			fmt.Printf("%s %-14s %v\n", scn, pol, res[pol])
		}
	}
}
