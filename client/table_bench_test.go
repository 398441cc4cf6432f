package client

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// BenchmarkTableUpdate measures what a resolver update of n endpoints
// costs a table that had none (the full set at start-up, or after a
// re-list), and the client memory each endpoint then takes (B/endpoint).
//
//	go test -run '^$' -bench BenchmarkTableUpdate -benchmem ./client
func BenchmarkTableUpdate(b *testing.B) {
	for _, policy := range []Policy{LeastLatency, ConsistentHash} {
		for _, n := range []int{1000, 10000} {
			eps := addrs(n)
			b.Run(fmt.Sprintf("%s/n=%d", policy, n), func(b *testing.B) {
				var mem float64
				for b.Loop() {
					b.StopTimer()
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					tb, _ := testTable(b, nil, WithoutProbe(), WithPolicy(policy), WithHashKey(HashByHeader("X")))
					b.StartTimer()
					tb.update(resolver.State{Endpoints: eps})
					b.StopTimer()
					runtime.GC()
					runtime.ReadMemStats(&after)
					mem = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
					runtime.KeepAlive(tb)
					b.StartTimer()
				}
				b.ReportMetric(mem, "B/endpoint")
			})
		}
	}
}

// BenchmarkTableRebuild measures the rebuild one health change causes
// (a probe verdict flips), per policy, at 10,000 endpoints: the work done
// under the table's lock on every health change and ejection.
//
//	go test -run '^$' -bench BenchmarkTableRebuild -benchmem ./client
func BenchmarkTableRebuild(b *testing.B) {
	for _, policy := range Policies() {
		b.Run(string(policy), func(b *testing.B) {
			tb, _ := testTable(b, addrs(10000), WithoutProbe(), WithPolicy(policy), WithHashKey(HashByHeader("X")))
			addr := addrs(10000)[4321].Addr
			health := []probe.Health{probe.Unhealthy, probe.Healthy}
			i := 0
			for b.Loop() {
				tb.onProbe(probe.Event{Status: probe.Status{Addr: addr, Health: health[i%2]}})
				i++
			}
		})
	}
}

// BenchmarkBalancerStartup replays what endpointsharding hands the balancer
// while n subchannels connect one after the other: n updates, each with
// every child's state. ns/endpoint should stay flat as n grows: one
// update costs a comparison per unchanged child, and snapshots are rebuilt
// at most once a millisecond, not once per child.
//
//	go test -run '^$' -bench BenchmarkBalancerStartup ./client
func BenchmarkBalancerStartup(b *testing.B) {
	for _, n := range []int{250, 500, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			eps := addrs(n)
			connecting := balancer.State{ConnectivityState: connectivity.Connecting, Picker: nil}
			for b.Loop() {
				b.StopTimer()
				tb, _ := testTable(b, eps, WithoutProbe(), func(c *config) { c.requireConnected = true })
				tb.cfg.now = func() int64 { return time.Now().UnixNano() }
				children := make([]endpointsharding.ChildState, n)
				for i, e := range eps {
					children[i] = endpointsharding.ChildState{
						Endpoint: grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: e.Addr}}},
						State:    connecting,
					}
				}
				b.StartTimer()
				for i := range children {
					children[i].State = balancer.State{ConnectivityState: connectivity.Ready, Picker: readyPicker{}}
					tb.setChildren(children)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/endpoint")
		})
	}
}

type readyPicker struct{}

func (readyPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, nil
}

// A full update of many endpoints allocates them together (endpointSlab):
// each still has a hot block of its own on its own cache lines, a repeated
// address keeps its first attributes, and the next update removes what it
// no longer lists.
func TestLargeUpdateKeepsEndpointsApart(t *testing.T) {
	eps := addrs(3 * slabMin)
	repeat := eps[7]
	repeat.Zone = "second"
	tb, _ := testTable(t, append(eps, repeat), WithoutProbe())
	all := tb.snapshot().all
	if len(all) != len(eps) {
		t.Fatalf("%d endpoints, want %d (one address was listed twice)", len(all), len(eps))
	}
	seen := make(map[*hotState]bool)
	for _, ep := range all {
		if seen[ep.hot] {
			t.Fatalf("%s shares its hot block", ep.addr)
		}
		seen[ep.hot] = true
		if a := uintptr(unsafe.Pointer(ep.hot)); a%128 != 0 {
			t.Errorf("%s: hot block at %#x, not on a 128-byte boundary", ep.addr, a)
		}
		if ep.addr == repeat.Addr && ep.attrs.Load().Zone != "" {
			t.Errorf("%s took the attributes of its repeat", ep.addr)
		}
	}
	tb.update(resolver.State{Endpoints: eps[:slabMin]})
	if n := len(tb.snapshot().all); n != slabMin {
		t.Fatalf("after an update listing %d endpoints, %d remain", slabMin, n)
	}
	kept := make(map[string]bool)
	for _, e := range eps[:slabMin] {
		kept[e.Addr] = true
	}
	for _, ep := range all {
		if ep.removed.Load() == kept[ep.addr] {
			t.Fatalf("%s: removed is %v, want %v", ep.addr, ep.removed.Load(), !kept[ep.addr])
		}
	}
}
