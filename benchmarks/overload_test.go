package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/overload"
)

// The overload scenario: two loopback HTTP backends with a fixed capacity
// (4 workers each, 50 ms per request: 160 req/s in all) that finish every
// request they take even when its client has gone (testbackend's
// WithoutCancel: a server whose handlers do not watch the request's
// context). Four independent smartroute clients (round robin, so that the
// spread is even and only protection differs; outlier detection off, see
// below), retries on (per-try timeout 250 ms, 502/503/504 retried within
// the default retry budget), send open-loop load, each request with a 1 s
// deadline: half the capacity for warm-up (4 s), three times the capacity
// (6 s), then half again (15 s).
const (
	ovBackends     = 2
	ovWorkers      = 4
	ovServiceTime  = 50 * time.Millisecond
	ovCapacity     = float64(ovBackends*ovWorkers) / 0.050 // req/s
	ovClients      = 4
	ovDeadline     = time.Second
	ovPerTry       = 250 * time.Millisecond
	ovShedLimit    = 2 * ovWorkers // per backend: its workers and as many waiting
	ovWarm         = 4 * time.Second
	ovSettle       = time.Second // of warm-up, not counted: connections open
	ovOverload     = 6 * time.Second
	ovRecovery     = 15 * time.Second
	ovLow          = 0.5 // share of capacity offered outside the overload
	ovHigh         = 3.0 // share of capacity offered during the overload
	ovRecoverBin   = 250 * time.Millisecond
	ovRecoverShare = 0.95 // a bin has recovered when this share of its requests succeed
)

// ovPhase names the parts of the run.
type ovPhase int

const (
	ovPhaseWarm ovPhase = iota
	ovPhaseOverload
	ovPhaseRecovery
)

// ovSample is one request of the scenario.
type ovSample struct {
	start   time.Duration // since the run started
	latency time.Duration
	phase   ovPhase
	ok      bool
}

// ovVariant is one way of protecting the service.
type ovVariant struct {
	name    string
	shed    bool          // an overload.Shedder in front of each backend
	guard   bool          // an overload.Guard around each client
	window  time.Duration // the guard's throttling window (0: the default)
	outlier bool          // the clients' outlier detection on
	// integrated: the clients' own protection (client.WithOverload, with
	// window) instead of a wrapping guard, and their default policy
	// (least_latency) instead of round robin.
	integrated bool
}

// BenchmarkOverload measures overload protection on the scenario above,
// without protection and with each part of it:
//
//   - protection=none: nothing but the clients' retry budget;
//   - protection=shedder: overload.Shedder in front of each backend (at
//     most 8 requests in, the rest refused with 503 at once);
//   - protection=guard: an overload.Guard with its defaults (adaptive
//     throttling over 2 minutes) around each client (overload.Transport);
//   - protection=guard+shedder: both;
//   - protection=guard10s+shedder: both, with a 10 s throttling window
//     (go-zero's) instead of the SRE book's 2 minutes;
//   - protection=guard+shedder+ejection: both, with the clients' outlier
//     detection on (its defaults eject an endpoint after 5 failures in a
//     row, and one endpoint of two may be ejected: the other would then
//     take all the load; the shedders' 503s are busy, not broken, and
//     must not eject). The variants above run without it, so that they
//     measure protection alone;
//   - protection=client, client+shedder, client10s+shedder: the
//     smartroute clients' own protection (client.WithOverload, its
//     defaults; the last with a 10 s throttling window), their default
//     policy (least_latency) and outlier detection on, without and with
//     the shedders: the figures through the real client as a user would
//     set it up.
//
// Figures: goodput-ratio (requests that succeeded within their deadline
// per second during the overload, over the backends' capacity), ms-p99 (of
// the requests that succeeded during the overload), ms-p99-unloaded (the
// same during warm-up, after its first second), p99-ratio (the two over
// each other), queued-at-end (requests the backends held, working or
// queued, when the overload ended: the backlog), s-recover (after the load
// drops back to half the capacity, how long until every 250 ms bin of
// requests succeeds at 95% or more; 15, the recovery phase's length, means
// not within it), local-reject-share (share of the overload's requests a
// guard refused without sending).
//
//	go test -run '^$' -bench BenchmarkOverload -benchtime=1x ./benchmarks
func BenchmarkOverload(b *testing.B) {
	for _, v := range []ovVariant{
		{name: "none"},
		{name: "shedder", shed: true},
		{name: "guard", guard: true},
		{name: "guard+shedder", guard: true, shed: true},
		{name: "guard10s+shedder", guard: true, shed: true, window: 10 * time.Second},
		{name: "guard+shedder+ejection", guard: true, shed: true, outlier: true},
		{name: "client", integrated: true, outlier: true},
		{name: "client+shedder", integrated: true, shed: true, outlier: true},
		{name: "client10s+shedder", integrated: true, shed: true, outlier: true, window: 10 * time.Second},
	} {
		b.Run("protection="+v.name, func(b *testing.B) {
			var runs []ovResult
			for b.Loop() {
				runs = append(runs, runOverload(b, v))
			}
			var r ovResult
			for _, x := range runs {
				r.goodput += x.goodput / float64(len(runs))
				r.p99 += x.p99 / time.Duration(len(runs))
				r.p99Unloaded += x.p99Unloaded / time.Duration(len(runs))
				r.recover += x.recover / time.Duration(len(runs))
				r.localRejects += x.localRejects / float64(len(runs))
				r.queued += x.queued / float64(len(runs))
			}
			b.ReportMetric(r.goodput/ovCapacity, "goodput-ratio")
			b.ReportMetric(ms(r.p99), "ms-p99")
			b.ReportMetric(ms(r.p99Unloaded), "ms-p99-unloaded")
			b.ReportMetric(float64(r.p99)/float64(r.p99Unloaded), "p99-ratio")
			b.ReportMetric(r.recover.Seconds(), "s-recover")
			b.ReportMetric(r.localRejects, "local-reject-share")
			b.ReportMetric(r.queued, "queued-at-end")
		})
	}
}

type ovResult struct {
	goodput      float64 // req/s
	p99          time.Duration
	p99Unloaded  time.Duration
	recover      time.Duration
	localRejects float64
	queued       float64 // requests held by the backends when the overload ended
}

func runOverload(b *testing.B, v ovVariant) ovResult {
	b.StopTimer()
	samples, rejected, queued := ovRun(b, v, b.StartTimer, b.StopTimer)
	r := ovFigures(samples, rejected)
	r.queued = float64(queued)
	b.StartTimer() // b.Loop wants it running
	return r
}

// ovRun sets variant v up, runs the scenario between started and stopped,
// and returns its samples, the overload's local rejections and the
// requests the backends held when the overload ended.
func ovRun(tb testing.TB, v ovVariant, started, stopped func()) ([]ovSample, int, int64) {
	addrs := make([]string, ovBackends)
	backends := make([]*testbackend.HTTP, ovBackends)
	for i := range addrs {
		opts := []testbackend.Option{testbackend.WithName(fmt.Sprintf("b%d", i)), testbackend.WithLatency(ovServiceTime),
			testbackend.WithCapacity(ovWorkers), testbackend.WithoutCancel()}
		if v.shed {
			s, err := overload.NewShedder(ovShedLimit, overload.WithShedLogger(discard))
			if err != nil {
				tb.Fatal(err)
			}
			opts = append(opts, testbackend.WithMiddleware(s.Middleware))
		}
		be, err := testbackend.NewHTTP(opts...)
		if err != nil {
			tb.Fatal(err)
		}
		defer be.Close()
		addrs[i], backends[i] = be.Addr(), be
	}
	var queued atomic.Int64
	atOverloadEnd := func() {
		for _, be := range backends {
			queued.Add(be.InFlight())
		}
	}
	targets := make([]target, ovClients)
	for i := range targets {
		opts := []client.Option{client.WithRetries(client.RetryPolicy{PerTryTimeout: ovPerTry})}
		if !v.outlier {
			opts = append(opts, client.WithOutlierDetection(client.OutlierDetection{Disabled: true}))
		}
		policy := client.RoundRobin
		if v.integrated {
			policy = client.DefaultPolicy
			opts = append(opts, client.WithOverload(overload.WithThrottling(overload.Throttling{Window: v.window})))
		}
		c := newClient(tb, addrs, policy, opts...)
		defer c.Close()
		var rt http.RoundTripper = c
		if v.guard {
			g, err := overload.New(service, overload.WithLogger(discard), overload.WithThrottling(overload.Throttling{Window: v.window}))
			if err != nil {
				tb.Fatal(err)
			}
			rt = &overload.Transport{Guard: g, Base: c}
		}
		targets[i] = target{rt: rt, url: "http://" + service + "/"}
	}
	started()
	samples, rejected := driveOpenLoop(targets, atOverloadEnd)
	stopped()
	return samples, rejected, queued.Load()
}

// driveOpenLoop sends the scenario's load through targets, each at its
// share of the rate whatever the answers (open loop: a request does not
// wait for the one before), and returns every request's sample and how
// many of the overload's requests a guard refused. It calls atOverloadEnd
// when the overload ends.
func driveOpenLoop(targets []target, atOverloadEnd func()) ([]ovSample, int) {
	var (
		mu       sync.Mutex
		all      []ovSample
		rejected int
		wg       sync.WaitGroup
	)
	start := time.Now()
	measure := time.AfterFunc(ovWarm+ovOverload, atOverloadEnd) // a measurement's moment, not synchronisation
	defer measure.Stop()
	phases := []struct {
		phase ovPhase
		until time.Duration
		load  float64
	}{{ovPhaseWarm, ovWarm, ovLow}, {ovPhaseOverload, ovWarm + ovOverload, ovHigh}, {ovPhaseRecovery, ovWarm + ovOverload + ovRecovery, ovLow}}
	for _, tg := range targets {
		wg.Go(func() {
			var from time.Duration
			for _, ph := range phases {
				rate := ph.load * ovCapacity / float64(len(targets))
				sent := 0
				for {
					now := time.Since(start)
					if now >= ph.until {
						break
					}
					// Send what is due by now: the rate holds even when
					// this goroutine is scheduled late.
					for due := int((now - from).Seconds() * rate); sent < due; sent++ {
						wg.Go(func() {
							s, refused := ovRequest(tg, start, ph.phase)
							mu.Lock()
							all = append(all, s)
							if refused && ph.phase == ovPhaseOverload {
								rejected++
							}
							mu.Unlock()
						})
					}
					time.Sleep(time.Millisecond) // pacing the generator, not synchronisation
				}
				from = ph.until
			}
		})
	}
	wg.Wait()
	return all, rejected
}

// ovRequest sends one GET with the scenario's deadline.
func ovRequest(tg target, start time.Time, phase ovPhase) (s ovSample, refused bool) {
	t0 := time.Now()
	s = ovSample{start: t0.Sub(start), phase: phase}
	ctx, cancel := context.WithTimeout(context.Background(), ovDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tg.url, nil)
	if err != nil {
		return s, false
	}
	resp, err := tg.rt.RoundTrip(req)
	if err != nil {
		var rej *overload.RejectedError
		return s, errors.As(err, &rej)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.latency = time.Since(t0)
	s.ok = err == nil && resp.StatusCode == http.StatusOK
	return s, false
}

// ovFigures computes a run's figures from its samples.
func ovFigures(samples []ovSample, rejected int) ovResult {
	var r ovResult
	var warm, over []time.Duration
	var overTotal int
	for _, s := range samples {
		if s.phase == ovPhaseOverload {
			overTotal++
		}
		if !s.ok {
			continue
		}
		switch s.phase {
		case ovPhaseWarm:
			if s.start >= ovSettle {
				warm = append(warm, s.latency)
			}
		case ovPhaseOverload:
			over = append(over, s.latency)
		}
	}
	slices.Sort(warm)
	slices.Sort(over)
	r.goodput = float64(len(over)) / ovOverload.Seconds()
	r.p99 = percentile(over, 0.99)
	r.p99Unloaded = percentile(warm, 0.99)
	if overTotal > 0 {
		r.localRejects = float64(rejected) / float64(overTotal)
	}
	r.recover = recoveryTime(samples)
	return r
}

// recoveryTime returns how long after the load dropped the requests
// recovered for good: the start of the first 250 ms bin from which on every
// bin has at least 95% of its requests succeed (the recovery phase's
// length when the last bin has not).
func recoveryTime(samples []ovSample) time.Duration {
	bins := int(ovRecovery / ovRecoverBin)
	okN, total := make([]int, bins), make([]int, bins)
	for _, s := range samples {
		if s.phase != ovPhaseRecovery {
			continue
		}
		i := min(int((s.start-ovWarm-ovOverload)/ovRecoverBin), bins-1)
		total[i]++
		if s.ok {
			okN[i]++
		}
	}
	first := bins
	for i := bins - 1; i >= 0; i-- {
		if total[i] > 0 && float64(okN[i]) < ovRecoverShare*float64(total[i]) {
			break
		}
		first = i
	}
	return time.Duration(first) * ovRecoverBin
}
