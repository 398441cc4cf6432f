//go:build unix

package probe

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// acceptors starts n loopback listeners that accept and close every
// connection, and returns their addresses and a stop function.
func acceptors(tb testing.TB, n int) ([]string, func()) {
	var lns []net.Listener
	var wg sync.WaitGroup
	stop := func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
	}
	return addrs, stop
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProbe1000Endpoints probes 1,000 real loopback listeners with TCP
// checks at a 1s interval (the default 10% jitter). One iteration is one
// round: 1,000 more completed checks. Run it with -benchtime=5x; the CPU
// figures include the listeners' accept loops in the same process.
func BenchmarkProbe1000Endpoints(b *testing.B) {
	const n = 1000
	addrs, stop := acceptors(b, n)
	defer stop()
	var checks, failures atomic.Int64
	p := New(TCP{}, WithInterval(time.Second))
	defer p.Close()
	p.Subscribe(func(ev Event) {
		checks.Add(1)
		if ev.LastErr != nil {
			failures.Add(1)
		}
	})

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	p.SetAddrs(addrs)
	waitRound := func(target int64) {
		deadline := time.Now().Add(30 * time.Second)
		for checks.Load() < target {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d checks after 30s", checks.Load(), target)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitRound(n)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heapPerEndpoint := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / n
	stackPerEndpoint := float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / n
	goroutinesPerEndpoint := float64(runtime.NumGoroutine()-g0) / n

	c0, cpu0, t0 := checks.Load(), cpuTime(), time.Now()
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := range b.N {
		waitRound(c0 + int64(i+1)*n)
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	cpu, wall, done := cpuTime()-cpu0, time.Since(t0), checks.Load()-c0
	b.ReportMetric(float64(cpu.Microseconds())/float64(done), "cpu-µs/check")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu")
	b.ReportMetric(float64(done)/wall.Seconds(), "checks/s")
	b.ReportMetric(heapPerEndpoint, "heap-B/endpoint")
	b.ReportMetric(stackPerEndpoint, "stack-B/endpoint")
	b.ReportMetric(goroutinesPerEndpoint, "goroutines/endpoint")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(done), "alloc-B/check")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(done), "allocs/check")
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d failed checks", f)
	}
}
