package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/resolver"
)

// service is the logical service name every HTTP benchmark addresses.
const service = "api"

// discard is the logger of every client: benchmark output stays readable.
var discard = slog.New(slog.DiscardHandler)

// baseTransport is the http.Transport every contender starts from, so that
// connection limits are the same for all: enough idle connections per host
// that parallel load does not churn connections.
func baseTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	return t
}

// newClient returns a ready smartroute client over a static list of addrs.
func newClient(tb testing.TB, addrs []string, policy client.Policy, opts ...client.Option) *client.Client {
	tb.Helper()
	r, err := resolver.NewStatic(addrs...)
	if err != nil {
		tb.Fatal(err)
	}
	opts = append([]client.Option{
		client.WithLogger(discard),
		client.WithPolicy(policy),
		client.WithHashKey(client.HashByHeader("X-Key")),
		client.WithTransport(baseTransport()),
	}, opts...)
	c, err := client.NewFromResolver(service, r, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		tb.Fatal(err)
	}
	return c
}

// ms converts a duration to float milliseconds for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// mean returns the arithmetic mean of ds.
func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// reportLatency reports ms-mean, ms-p50 and ms-p99 of ds (which it sorts).
func reportLatency(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	b.ReportMetric(ms(mean(ds)), "ms-mean")
	b.ReportMetric(ms(percentile(ds, 0.50)), "ms-p50")
	b.ReportMetric(ms(percentile(ds, 0.99)), "ms-p99")
}

// sample is one request of a scenario.
type sample struct {
	start   time.Duration // since the scenario started
	latency time.Duration
	backend int // index of the backend that answered, -1 on failure
}

// target is one HTTP client of a scenario: how it sends and where to.
type target struct {
	rt  http.RoundTripper
	url string
}

// drive sends exactly n GET requests through targets, workers goroutines per
// target, handing out request numbers from one counter. The goroutine that
// takes request n/2 first calls half (if not nil) and returns its offset
// through the switch time. It returns every request's sample, and the offset
// at which half ran.
func drive(ctx context.Context, targets []target, workers, n int, half func()) ([]sample, time.Duration) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		all      = make([]sample, 0, n)
		switched time.Duration
		wg       sync.WaitGroup
	)
	start := time.Now()
	for _, tg := range targets {
		for range workers {
			wg.Go(func() {
				local := make([]sample, 0, n/(len(targets)*workers)+1)
				for ctx.Err() == nil {
					i := next.Add(1) - 1
					if i >= int64(n) {
						break
					}
					if i == int64(n/2) && half != nil {
						half()
						mu.Lock()
						switched = time.Since(start)
						mu.Unlock()
					}
					t0 := time.Now()
					be := get(ctx, tg, i)
					local = append(local, sample{start: t0.Sub(start), latency: time.Since(t0), backend: be})
				}
				mu.Lock()
				all = append(all, local...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return all, switched
}

// get sends one GET and returns the index of the backend that answered
// (backends are named b0, b1, …), or -1 when the request failed.
func get(ctx context.Context, tg target, i int64) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tg.url, nil)
	if err != nil {
		return -1
	}
	req.Header.Set("X-Key", strconv.FormatInt(i, 10))
	resp, err := tg.rt.RoundTrip(req)
	if err != nil {
		return -1
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return -1
	}
	return backendIndex(resp.Header.Get(testbackend.HeaderBackend))
}

// backendIndex parses "b3" as 3; anything else is -1.
func backendIndex(name string) int {
	if len(name) < 2 || name[0] != 'b' {
		return -1
	}
	i, err := strconv.Atoi(name[1:])
	if err != nil {
		return -1
	}
	return i
}

// env is a set of loopback HTTP backends named b0…b(n-1) whose injected
// latencies the benchmark knows, as the oracle does.
type env struct {
	bs       []*testbackend.HTTP
	lat      []atomic.Int64 // injected latency, ns
	tailP    []float64      // heavy tail: share of answers…
	tailK    []float64      // …k times slower
	failing  []atomic.Bool  // answering 502 at once
	capacity int
	inFlight []atomic.Int64 // oracle requests outstanding per backend
	rr       atomic.Uint64  // the oracle's rotation among equals
}

// newEnv starts n backends with latency lat, capacity workers each (0: no
// limit), and opts.
func newEnv(b testing.TB, n int, lat time.Duration, capacity int, opts ...testbackend.Option) *env {
	b.Helper()
	e := &env{
		bs:       make([]*testbackend.HTTP, n),
		lat:      make([]atomic.Int64, n),
		tailP:    make([]float64, n),
		tailK:    make([]float64, n),
		failing:  make([]atomic.Bool, n),
		capacity: capacity,
		inFlight: make([]atomic.Int64, n),
	}
	for i := range n {
		e.bs[i] = testbackend.MustHTTP(b, append([]testbackend.Option{testbackend.WithName(fmt.Sprintf("b%d", i)),
			testbackend.WithLatency(lat), testbackend.WithCapacity(capacity)}, opts...)...)
		e.lat[i].Store(int64(lat))
	}
	return e
}

// setLatency injects latency d into backend i.
func (e *env) setLatency(i int, d time.Duration) {
	e.lat[i].Store(int64(d))
	e.bs[i].SetLatency(d)
}

// setHeavyTail makes a share p of backend i's answers k times slower.
func (e *env) setHeavyTail(i int, p, k float64) {
	e.tailP[i], e.tailK[i] = p, k
	e.bs[i].SetHeavyTail(p, k)
}

// setFailing makes backend i answer 502 at once (or normally again): a
// broken backend, which outlier detection ejects (a 503 would say busy,
// which it does not).
func (e *env) setFailing(i int, failing bool) {
	e.failing[i].Store(failing)
	if failing {
		e.bs[i].SetStatus(http.StatusBadGateway)
	} else {
		e.bs[i].SetStatus(0)
	}
}

// reset gives every backend latency d and nothing else: no heavy tail,
// no failures.
func (e *env) reset(d time.Duration) {
	for i := range e.bs {
		e.setLatency(i, d)
		e.setHeavyTail(i, 0, 0)
		e.setFailing(i, false)
	}
}

func (e *env) addrs() []string {
	out := make([]string, len(e.bs))
	for i, b := range e.bs {
		out[i] = b.Addr()
	}
	return out
}

// expected is the latency a new request to backend i would see, by what
// the benchmark injected: the mean with its heavy tail, times the queue it
// would wait behind when the backend's workers are all busy.
func (e *env) expected(i int) float64 {
	if e.failing[i].Load() {
		return math.Inf(1)
	}
	d := float64(e.lat[i].Load()) * (1 - e.tailP[i] + e.tailP[i]*e.tailK[i])
	if e.capacity > 0 {
		d *= float64(1 + e.inFlight[i].Load()/int64(e.capacity))
	}
	return d
}

// oracle is a RoundTripper that always sends to the truly fastest backend
// of an env, knowing the injected latencies and (for capacity-limited
// backends) every oracle's requests in flight; it rotates among equals.
type oracle struct {
	e  *env
	tr *http.Transport
}

func (e *env) oracle() *oracle { return &oracle{e: e, tr: baseTransport()} }

func (o *oracle) pick() int {
	n := len(o.e.bs)
	first := int(o.e.rr.Add(1) % uint64(n))
	best, bestCost := -1, 0.0
	for k := range n {
		i := (first + k) % n
		if c := o.e.expected(i); best < 0 || c < bestCost {
			best, bestCost = i, c
		}
	}
	return best
}

// RoundTrip sends req to the fastest backend; only the dial target changes,
// as with the smartroute client.
func (o *oracle) RoundTrip(req *http.Request) (*http.Response, error) {
	i := o.pick()
	o.e.inFlight[i].Add(1)
	r := req.Clone(req.Context())
	r.URL.Host = o.e.bs[i].Addr()
	r.Host = req.URL.Host
	resp, err := o.tr.RoundTrip(r)
	if err != nil {
		o.e.inFlight[i].Add(-1)
		return nil, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: func() { o.e.inFlight[i].Add(-1) }}
	return resp, nil
}

func (o *oracle) Close() { o.tr.CloseIdleConnections() }

// doneBody calls done once, when the body is closed.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	d.once.Do(d.done)
	return err
}

// shares counts the share of answered requests each backend took.
func shares(samples []sample, n int) (share []float64, failed int) {
	counts := make([]int, n)
	ok := 0
	for _, s := range samples {
		if s.backend < 0 || s.backend >= n {
			failed++
			continue
		}
		counts[s.backend]++
		ok++
	}
	share = make([]float64, n)
	for i, c := range counts {
		if ok > 0 {
			share[i] = float64(c) / float64(ok)
		}
	}
	return share, failed
}

// followTime returns how long after switched traffic left backend slow for
// good: windows of window consecutive requests (by start time) are bad when
// more than threshold of them went to slow, and the answer is the start of
// the last request sent to slow in the last bad window (0 when no window
// after the switch is bad). ok is false when the last window is still bad:
// traffic never followed.
func followTime(samples []sample, switched time.Duration, slow, window int, threshold float64) (d time.Duration, ok bool) {
	after := make([]sample, 0, len(samples))
	for _, s := range samples {
		if s.start >= switched {
			after = append(after, s)
		}
	}
	slices.SortFunc(after, func(a, b sample) int { return int(a.start - b.start) })
	in, lastBad := 0, -1 // lastBad: index of the last request of the last bad window
	for i, s := range after {
		if s.backend == slow {
			in++
		}
		if i >= window && after[i-window].backend == slow {
			in--
		}
		if i >= window-1 && float64(in) > threshold*float64(window) {
			lastBad = i
		}
	}
	if lastBad < 0 {
		return 0, true
	}
	if lastBad == len(after)-1 {
		return 0, false
	}
	for i := lastBad; i > lastBad-window; i-- {
		if after[i].backend == slow {
			return after[i].start - switched, true
		}
	}
	return 0, true // unreachable: a bad window holds a request to slow
}

// winTime returns how long after the first fast answer of backend winner
// after switched (the first that took under half the time of the slowest
// answer it gave before) it took a share of at least threshold of a window
// of window consecutive requests (by start time). ok is false when it never
// did, or never answered fast.
func winTime(samples []sample, switched time.Duration, winner, window int, threshold float64) (d time.Duration, ok bool) {
	after := make([]sample, 0, len(samples))
	var slowBefore time.Duration
	for _, s := range samples {
		if s.start >= switched {
			after = append(after, s)
		} else if s.backend == winner {
			slowBefore = max(slowBefore, s.latency)
		}
	}
	slices.SortFunc(after, func(a, b sample) int { return int(a.start - b.start) })
	first := -1
	for i, s := range after {
		if s.backend == winner && (slowBefore == 0 || s.latency < slowBefore/2) {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, false
	}
	fastAt := after[first].start + after[first].latency
	in := 0
	for i := first; i < len(after); i++ {
		if after[i].backend == winner {
			in++
		}
		if i-first >= window && after[i-window].backend == winner {
			in--
		}
		if i-first >= window-1 && float64(in) >= threshold*float64(window) {
			return max(after[i].start-fastAt, 0), true
		}
	}
	return 0, false
}
