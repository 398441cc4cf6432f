package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
)

// Timeouts of the test waits. They bound the waits; nothing waits them out
// when things go well. Generous: the tests run in parallel, each with its
// own etcd, on loaded 2-core machines with the race detector.
const (
	shortWait = 30 * time.Second
	longWait  = 60 * time.Second
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logRecord finds the first JSON log line with the message msg.
func logRecord(logs, msg string) (map[string]any, bool) {
	s := bufio.NewScanner(strings.NewReader(logs))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		var rec map[string]any
		if json.Unmarshal(s.Bytes(), &rec) == nil && rec["msg"] == msg {
			return rec, true
		}
	}
	return nil, false
}

// testAgent is run() in a goroutine of the test process.
type testAgent struct {
	cancel context.CancelFunc
	done   chan int
	logs   *syncBuffer
	once   sync.Once
	code   int
}

// agentArgs returns the flags every agent test uses: JSON logs, fast
// checks (fall 2, so that one check slowed by a loaded machine does not
// flap the registration), a short TTL, no drain period, /metrics on a free
// port. Later flags override earlier ones.
func agentArgs(c *etcdtest.Cluster, extra ...string) []string {
	args := []string{
		"--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--etcd-dial-timeout", "1s",
		"--service", "api",
		"--check-interval", "100ms", "--check-timeout", "100ms",
		"--rise", "1", "--fall", "2",
		"--ttl", "2s",
		"--drain-period", "0s",
		"--listen", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "debug",
	}
	return append(args, extra...)
}

// startAgent runs the agent with args and env until the test ends or stop
// is called. Its logs are shown when the test fails.
func startAgent(t *testing.T, env map[string]string, args ...string) *testAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{cancel: cancel, done: make(chan int, 1), logs: &syncBuffer{}}
	go func() { a.done <- run(ctx, args, envMap(env), io.Discard, a.logs) }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			t.Logf("agent logs:\n%s", a.logs.String())
		}
	})
	return a
}

// stop cancels the agent's context, as a SIGTERM does, and returns its exit
// code.
func (a *testAgent) stop(t testing.TB) int {
	t.Helper()
	a.once.Do(func() {
		a.cancel()
		select {
		case a.code = <-a.done:
		case <-time.After(longWait):
			t.Errorf("agent did not return %v after cancel", longWait)
			a.code = -1
		}
	})
	return a.code
}

// httpAddr returns the address of the agent's /metrics and /healthz server,
// from its log.
func (a *testAgent) httpAddr(t testing.TB) string {
	t.Helper()
	var addr string
	waitFor(t, shortWait, "the agent to log its listen address", func() bool {
		rec, ok := logRecord(a.logs.String(), "serving /metrics and /healthz")
		if ok {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	})
	return addr
}

// healthz returns the status code and body of GET /healthz.
func healthz(t testing.TB, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitHealthz waits until /healthz answers code with a body containing
// substr.
func waitHealthz(t testing.TB, addr string, code int, substr string) string {
	t.Helper()
	var gotCode int
	var body string
	deadline := time.Now().Add(longWait)
	for {
		gotCode, body = healthz(t, addr)
		if gotCode == code && strings.Contains(body, substr) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz = %d %q, want %d containing %q", gotCode, body, code, substr)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of a bounded wait
	}
}

// scrape fetches /metrics and parses it with Prometheus' text parser.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return mfs
}

// metricValue sums the series of family name whose labels include the
// given name/value pairs: counter, gauge, or the sample count of a
// histogram.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	var sum float64
series:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// keyEvent is one state of a watched key: Inst is nil when the key is
// absent.
type keyEvent struct {
	Inst  *registry.Instance
	Lease clientv3.LeaseID
	At    time.Time
}

// keyWatch follows one etcd key: its current state, then every change.
type keyWatch struct {
	key    string
	events chan keyEvent
}

func watchKey(t *testing.T, cli *clientv3.Client, key string) *keyWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &keyWatch{key: key, events: make(chan keyEvent, 1024)}
	get, err := cli.Get(ctx, key)
	if err != nil {
		cancel()
		t.Fatalf("get %s: %v", key, err)
	}
	first := keyEvent{At: time.Now()}
	if len(get.Kvs) == 1 {
		first = decodeKV(t, key, get.Kvs[0].Value, get.Kvs[0].Lease)
	}
	w.events <- first
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(get.Header.Revision+1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				e := keyEvent{At: time.Now()}
				if ev.Type == clientv3.EventTypePut {
					e = decodeKV(t, key, ev.Kv.Value, ev.Kv.Lease)
				}
				select {
				case w.events <- e:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func decodeKV(t *testing.T, key string, value []byte, lease int64) keyEvent {
	inst, err := registry.Decode(registry.DefaultPrefix, key, value)
	if err != nil {
		t.Errorf("key %s holds an undecodable value %q: %v", key, value, err)
	}
	return keyEvent{Inst: &inst, Lease: clientv3.LeaseID(lease), At: time.Now()}
}

// expect consumes events until one satisfies pred.
func (w *keyWatch) expect(t testing.TB, timeout time.Duration, what string, pred func(keyEvent) bool) keyEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev := <-w.events:
			if pred(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: timed out after %v waiting for %s", w.key, timeout, what)
		}
	}
}

// pending returns the events received and not yet consumed.
func (w *keyWatch) pending() []keyEvent {
	var evs []keyEvent
	for {
		select {
		case ev := <-w.events:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func present(ev keyEvent) bool { return ev.Inst != nil }
func absent(ev keyEvent) bool  { return ev.Inst == nil }
func draining(ev keyEvent) bool {
	return ev.Inst != nil && ev.Inst.State == registry.InstanceDraining
}

// getKey reads the key once.
func getKey(t testing.TB, cli *clientv3.Client, key string) (*clientv3.GetResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), shortWait)
	defer cancel()
	return cli.Get(ctx, key)
}
