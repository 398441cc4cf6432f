package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// Probe metric names read by the tests.
const (
	checksMetric   = "smartroute_probe_duration_seconds" // histogram count, by result
	failuresMetric = "smartroute_probe_failures_total"
)

func TestRegistersOnlyWhileTheCheckPasses(t *testing.T) {
	const rise, fall = 3, 2
	b := testbackend.MustHTTP(t, testbackend.WithStatus(http.StatusServiceUnavailable))
	c := etcdtest.Start(t)
	cli := c.Client(t)
	key := registry.Key(registry.DefaultPrefix, "api", "web-1")
	w := watchKey(t, cli, key)

	a := startAgent(t, nil, agentArgs(c,
		"--id", "web-1", "--addr", b.Addr(),
		"--check", "http", "--check-target", b.URL()+"/healthz",
		"--rise", "3", "--fall", "2",
		"--zone", "z1", "--weight", "7", "--instance-version", "v1.2.3", "--label", "canary=true",
	)...)
	addr := a.httpAddr(t)

	// The backend answers 503: checks reach it, the instance stays out.
	waitFor(t, shortWait, "failing checks to reach the backend", func() bool { return b.Requests() >= 4 })
	waitHealthz(t, addr, http.StatusServiceUnavailable, "not registered: local check failing: ")
	if resp, err := getKey(t, cli, key); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key present while the check fails (err %v): %v", err, resp.Kvs)
	}

	// The backend comes up: the key appears after rise successful checks.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	b.SetStatus(http.StatusOK)
	successes := metricValue(scrape(t, addr), checksMetric, "result", "success")
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, ev := range w.pending() {
		if present(ev) {
			t.Fatalf("key appeared before the backend was healthy: %+v", ev.Inst)
		}
	}
	up := w.expect(t, shortWait, "the key to appear", present)
	if got := metricValue(scrape(t, addr), checksMetric, "result", "success") - successes; got < rise {
		t.Errorf("registered after %v successful checks, want at least rise = %d", got, rise)
	}
	want := registry.Instance{Service: "api", ID: "web-1", Addr: b.Addr(), Zone: "z1", Weight: 7,
		Version: "v1.2.3", Labels: map[string]string{"canary": "true"}}
	if !up.Inst.Equal(want) || up.Inst.Draining() {
		t.Errorf("registered %+v, want %+v", *up.Inst, want)
	}
	waitHealthz(t, addr, http.StatusOK, "registered as "+key)

	// The backend fails: the key goes after fall failed checks.
	failures := metricValue(scrape(t, addr), failuresMetric)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, shortWait, "the key to go after the backend stopped", absent)
	if got := metricValue(scrape(t, addr), failuresMetric) - failures; got < fall {
		t.Errorf("deregistered after %v failed checks, want at least fall = %d", got, fall)
	}
	waitHealthz(t, addr, http.StatusServiceUnavailable, "not registered")
	mfs := scrape(t, addr)
	if got := metricValue(mfs, "smartroute_regagent_deregistrations_total", "reason", "unhealthy"); got != 1 {
		t.Errorf("deregistrations_total{reason=unhealthy} = %v, want 1", got)
	}
	if got := metricValue(mfs, "smartroute_regagent_registered"); got != 0 {
		t.Errorf("registered gauge = %v after deregistration, want 0", got)
	}

	// It recovers: the key comes back, under a new lease.
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	again := w.expect(t, shortWait, "the key to come back after the backend recovered", present)
	if again.Lease == up.Lease {
		t.Errorf("registered again under the old lease %x", up.Lease)
	}
	if code := a.stop(t); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	w.expect(t, shortWait, "the key to go at shutdown", absent)
}

func TestShutdownDrainsThenDeregisters(t *testing.T) {
	const drain = time.Second
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	key := registry.Key(registry.DefaultPrefix, "api", b.Addr())
	w := watchKey(t, cli, key)
	a := startAgent(t, nil, agentArgs(c, "--addr", b.Addr(), "--check", "tcp", "--drain-period", drain.String())...)
	addr := a.httpAddr(t)
	w.expect(t, shortWait, "the key to appear", present)
	waitHealthz(t, addr, http.StatusOK, "registered")

	done := make(chan int, 1)
	go func() { done <- a.stop(t) }()
	start := w.expect(t, shortWait, "the instance to read as draining", draining)
	code, body := healthz(t, addr)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining") {
		t.Errorf("/healthz while draining = %d %q, want 503 draining", code, body)
	}
	if got := metricValue(scrape(t, addr), "smartroute_regagent_draining"); got != 1 {
		t.Errorf("draining gauge = %v while draining, want 1", got)
	}
	gone := w.expect(t, shortWait, "the key to go after the drain period", absent)
	if d := gone.At.Sub(start.At); d < drain-100*time.Millisecond {
		t.Errorf("key went %v after it read as draining, want the drain period %v", d, drain)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	case <-time.After(shortWait):
		t.Fatal("agent did not exit after deregistering")
	}
	if _, ok := logRecord(a.logs.String(), "deregistered"); !ok {
		t.Error("no \"deregistered\" log record")
	}
}

func TestRegistersAgainAfterEtcdOutageLongerThanTTL(t *testing.T) {
	t.Parallel() // waits out TTLs and etcd auth; overlaps with the other slow tests
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	key := registry.Key(registry.DefaultPrefix, "api", b.Addr())
	a := startAgent(t, nil, agentArgs(c, "--addr", b.Addr(), "--ttl", "1s")...)
	addr := a.httpAddr(t)
	waitHealthz(t, addr, http.StatusOK, "registered")
	before, err := getKey(t, cli, key)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", key, err, before)
	}
	oldLease := before.Kvs[0].Lease

	c.Stop(t)
	// The keepalive gives up once the TTL passed without an answer: the
	// outage has then lasted longer than the TTL.
	waitHealthz(t, addr, http.StatusServiceUnavailable, "registration lost, registering again")
	c.Restart(t)

	waitFor(t, longWait, "the instance to be registered again under a new lease", func() bool {
		resp, err := getKey(t, cli, key)
		return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != oldLease
	})
	waitHealthz(t, addr, http.StatusOK, "registered")
	if got := metricValue(scrape(t, addr), "smartroute_registry_lease_losses_total"); got < 1 {
		t.Errorf("lease_losses_total = %v, want at least 1", got)
	}
}

func TestFirstConnectionRetriesUntilEtcdIsUp(t *testing.T) {
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	key := registry.Key(registry.DefaultPrefix, "api", b.Addr())
	c.Stop(t)

	a := startAgent(t, nil, agentArgs(c, "--addr", b.Addr(), "--etcd-dial-timeout", "300ms")...)
	addr := a.httpAddr(t)
	waitFor(t, longWait, "a failed attempt to reach etcd", func() bool {
		return metricValue(scrape(t, addr), "smartroute_regagent_register_failures_total") >= 1
	})
	code, body := healthz(t, addr)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not registered: ") {
		t.Errorf("/healthz with etcd down = %d %q, want 503 not registered: <etcd error>", code, body)
	}

	c.Restart(t)
	waitFor(t, longWait, "the instance to be registered once etcd is up", func() bool {
		resp, err := getKey(t, cli, key)
		return err == nil && len(resp.Kvs) == 1
	})
	waitHealthz(t, addr, http.StatusOK, "registered")
}

func TestMetricsServesValidPrometheusText(t *testing.T) {
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	a := startAgent(t, nil, agentArgs(c, "--addr", b.Addr())...)
	addr := a.httpAddr(t)
	waitHealthz(t, addr, http.StatusOK, "registered")

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want Prometheus text", ct)
	}
	mfs := scrape(t, addr) // parses it strictly
	wantOne := []string{
		"smartroute_regagent_registered",
		"smartroute_regagent_check_healthy",
		"smartroute_regagent_build_info",
		"smartroute_registry_registered",
	}
	for _, name := range wantOne {
		if got := metricValue(mfs, name); got != 1 {
			t.Errorf("%s = %v, want 1", name, got)
		}
	}
	for _, name := range []string{
		"smartroute_regagent_draining", "smartroute_regagent_register_failures_total",
		"smartroute_regagent_deregistrations_total", "smartroute_registry_registrations_total",
		checksMetric, "go_goroutines", "process_open_fds",
	} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if got := metricValue(mfs, "smartroute_regagent_build_info", "version", versionString()); got != 1 {
		t.Errorf("build_info{version=%q} = %v, want 1", versionString(), got)
	}

	// /healthz before registration and unknown paths.
	resp, err = http.Get("http://" + addr + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", resp.StatusCode)
	}
}

func TestHealthzBeforeTheFirstCheckPasses(t *testing.T) {
	b := testbackend.MustHTTP(t, testbackend.WithStatus(http.StatusInternalServerError))
	c := etcdtest.Start(t)
	a := startAgent(t, nil, agentArgs(c, "--addr", b.Addr(), "--check", "http", "--rise", "2", "--fall", "50")...)
	addr := a.httpAddr(t)
	waitFor(t, shortWait, "a failing check", func() bool { return b.Requests() >= 1 })
	body := waitHealthz(t, addr, http.StatusServiceUnavailable, "not registered: local check at 0/2 successes")
	if !strings.Contains(body, "500") {
		t.Errorf("/healthz = %q, want the last error (status 500) in it", body)
	}
}

func TestListenAddressTakenExits1(t *testing.T) {
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	args := agentArgs(c, "--addr", b.Addr())
	args = append(args, "--listen", b.Addr()) // taken by the backend
	a := startAgent(t, nil, args...)
	select {
	case code := <-a.done:
		a.once.Do(func() { a.code = code })
		if code != exitFailure {
			t.Errorf("exit code %d, want %d", code, exitFailure)
		}
	case <-time.After(shortWait):
		t.Fatal("agent kept running with its --listen address taken")
	}
	if !strings.Contains(a.logs.String(), "address already in use") {
		t.Errorf("logs do not say why:\n%s", a.logs.String())
	}
}
