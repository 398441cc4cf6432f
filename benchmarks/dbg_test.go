package benchmarks

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

func TestDbgCapacity(t *testing.T) {
	for _, scn := range []string{"capacity", "capacity_reports"} {
		var sc routingScenario
		for _, s := range routingScenarios() {
			if s.name == scn {
				sc = s
			}
		}
		var opts []testbackend.Option
		if sc.reports {
			opts = append(opts, testbackend.WithLoadReport())
		}
		e := newEnv(t, sc.backends, 0, sc.capacity, opts...)
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
				res[pol] = append(res[pol], fmt.Sprintf("mean %.2f p99 %.2f", ms(mean(lat)), ms(percentile(lat, 0.99))))
			}
		}
		for _, pol := range []client.Policy{"", client.LeastLatency, client.RoundRobin} {
			fmt.Printf("%s %-14s %v\n", scn, pol, res[pol])
		}
	}
}
