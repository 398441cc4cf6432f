package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// agentProcess is regagent running as a real process: the test binary
// re-executed with envRunAsAgent set, so that main, its signal handling and
// its exit codes are what runs.
type agentProcess struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

func startProcess(t *testing.T, args ...string) *agentProcess {
	t.Helper()
	p := &agentProcess{stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), envRunAsAgent+"=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start agent process: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("agent process stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// httpAddr returns the address of the process's /metrics and /healthz
// server, from its JSON logs.
func (p *agentProcess) httpAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, longWait, "the listen address in the JSON logs", func() bool {
		rec, ok := logRecord(p.stderr.String(), "serving /metrics and /healthz")
		if ok {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	})
	return addr
}

// waitRegistered waits until the process reports the instance registered
// on /healthz: the key is written and the agent holds it.
func (p *agentProcess) waitRegistered(t *testing.T) {
	t.Helper()
	waitHealthz(t, p.httpAddr(t), http.StatusOK, "registered")
}

func (p *agentProcess) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *agentProcess) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("agent process still running after %v", timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("agent process: %v", p.err)
	return -1
}

// TestProcess runs the agent as a real process against a real etcd and a
// real backend, as an operator would.
func TestProcess(t *testing.T) {
	t.Parallel() // waits out TTLs and etcd auth; overlaps with the other slow tests
	b := testbackend.MustHTTP(t)
	c := etcdtest.Start(t)
	cli := c.Client(t)
	args := func(id string, extra ...string) []string {
		return agentArgs(c, append([]string{"--id", id, "--addr", b.Addr()}, extra...)...)
	}
	keyOf := func(id string) string { return registry.Key(registry.DefaultPrefix, "api", id) }

	t.Run("registered only while the backend is healthy", func(t *testing.T) {
		back := testbackend.MustHTTP(t)
		if err := back.Stop(); err != nil {
			t.Fatal(err)
		}
		w := watchKey(t, cli, keyOf("health"))
		p := startProcess(t, agentArgs(c, "--id", "health", "--addr", back.Addr(), "--check", "http")...)
		addr := p.httpAddr(t)
		waitHealthz(t, addr, http.StatusServiceUnavailable, "local check failing")
		if err := back.Restart(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range w.pending() {
			if present(ev) {
				t.Fatalf("key appeared before the backend was up: %+v", ev.Inst)
			}
		}
		w.expect(t, shortWait, "the key to appear once the backend is up", present)
		if err := back.Stop(); err != nil {
			t.Fatal(err)
		}
		w.expect(t, shortWait, "the key to go once the backend is down", absent)
		if err := back.Restart(); err != nil {
			t.Fatal(err)
		}
		w.expect(t, shortWait, "the key to come back once the backend recovered", present)
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, shortWait); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})

	t.Run("serves /metrics as valid Prometheus text", func(t *testing.T) {
		p := startProcess(t, args("metrics")...)
		addr := p.httpAddr(t)
		waitHealthz(t, addr, http.StatusOK, "registered")
		if got := metricValue(scrape(t, addr), "smartroute_regagent_registered"); got != 1 {
			t.Errorf("smartroute_regagent_registered = %v, want 1", got)
		}
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, shortWait); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})

	t.Run("SIGTERM drains, deregisters and exits 0", func(t *testing.T) {
		const drain = time.Second
		w := watchKey(t, cli, keyOf("term"))
		p := startProcess(t, args("term", "--drain-period", drain.String())...)
		w.expect(t, longWait, "the key to appear", present)
		p.waitRegistered(t)
		p.signal(t, syscall.SIGTERM)
		start := w.expect(t, shortWait, "the instance to read as draining", draining)
		gone := w.expect(t, shortWait, "the key to go", absent)
		if d := gone.At.Sub(start.At); d < drain-100*time.Millisecond {
			t.Errorf("key went %v after draining began, want the drain period %v", d, drain)
		}
		if code := p.wait(t, shortWait); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})

	t.Run("SIGKILL: the key expires within the TTL", func(t *testing.T) {
		const ttl = 2 * time.Second
		w := watchKey(t, cli, keyOf("kill"))
		p := startProcess(t, args("kill", "--ttl", ttl.String())...)
		w.expect(t, longWait, "the key to appear", present)
		p.waitRegistered(t)
		p.signal(t, syscall.SIGKILL)
		killed := time.Now()
		p.wait(t, shortWait)
		gone := w.expect(t, ttl+shortWait, "the key to expire", absent)
		// etcd looks for expired leases every 500 ms and revokes them
		// through raft; the slack covers that on a loaded test machine.
		d := gone.At.Sub(killed)
		t.Logf("key went %v after SIGKILL (TTL %v)", d, ttl)
		if d > ttl+3*time.Second {
			t.Errorf("key went %v after SIGKILL, want within about the TTL %v", d, ttl)
		}
	})

	t.Run("a second signal exits at once", func(t *testing.T) {
		w := watchKey(t, cli, keyOf("twice"))
		p := startProcess(t, args("twice", "--drain-period", "1m")...)
		w.expect(t, longWait, "the key to appear", present)
		p.waitRegistered(t)
		p.signal(t, syscall.SIGINT)
		w.expect(t, shortWait, "the instance to read as draining", draining)
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, shortWait); code != exitFailure {
			t.Errorf("exit code %d after a second signal, want %d", code, exitFailure)
		}
		if !strings.Contains(p.stderr.String(), "second signal") {
			t.Errorf("stderr does not say why it exited:\n%s", p.stderr.String())
		}
		// Not deregistered: the key waits for its lease to expire.
		resp, err := getKey(t, cli, keyOf("twice"))
		if err != nil || len(resp.Kvs) != 1 {
			t.Errorf("key after the second signal: %v %v; want it left to its lease", err, resp)
		}
	})

	t.Run("a killed predecessor's key is taken over at once", func(t *testing.T) {
		// A TTL well above the wait below: the successor must not wait
		// the old key out.
		const ttl = 30 * time.Second
		w := watchKey(t, cli, keyOf("restart"))
		p := startProcess(t, args("restart", "--ttl", ttl.String())...)
		first := w.expect(t, longWait, "the key to appear", present)
		p.waitRegistered(t)
		p.signal(t, syscall.SIGKILL)
		p.wait(t, shortWait)
		// The successor starts while the old key still lives, and
		// registers as soon as its check passes.
		next := startProcess(t, args("restart", "--ttl", ttl.String())...)
		w.expect(t, longWait, "the successor to register", func(ev keyEvent) bool {
			return present(ev) && ev.Lease != first.Lease
		})
		// The key is written before the agent hears back from etcd: wait
		// for the agent itself to report the registration before stopping
		// it, or a signal in between cancels a write etcd already applied.
		next.waitRegistered(t)
		ctx, cancel := context.WithTimeout(context.Background(), shortWait)
		defer cancel()
		if ttl, err := cli.TimeToLive(ctx, first.Lease); err != nil || ttl.TTL <= 0 {
			t.Errorf("the old lease had expired (%v, %v): the test proves nothing", ttl, err)
		}
		next.signal(t, syscall.SIGTERM)
		if code := next.wait(t, shortWait); code != 0 {
			t.Errorf("successor exit code %d", code)
		}
		if !strings.Contains(next.stderr.String(), "took over") {
			t.Errorf("the successor did not say it took the old key over:\n%s", next.stderr.String())
		}
	})

	// Last: it stops the cluster.
	t.Run("registered again after an etcd outage longer than the TTL", func(t *testing.T) {
		w := watchKey(t, cli, keyOf("outage"))
		p := startProcess(t, args("outage", "--ttl", "1s")...)
		addr := p.httpAddr(t)
		first := w.expect(t, longWait, "the key to appear", present)
		waitHealthz(t, addr, http.StatusOK, "registered")
		c.Stop(t)
		waitHealthz(t, addr, http.StatusServiceUnavailable, "registration lost")
		c.Restart(t)
		waitFor(t, longWait, "the instance to be registered again under a new lease", func() bool {
			resp, err := getKey(t, cli, keyOf("outage"))
			return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != int64(first.Lease)
		})
		waitHealthz(t, addr, http.StatusOK, "registered")
		p.signal(t, syscall.SIGTERM)
		if code := p.wait(t, longWait); code != 0 {
			t.Errorf("exit code %d", code)
		}
	})
}

func TestProcessBadFlagsExit2(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "127.0.0.1:1"}, "regagent: --service is required"},
		{[]string{"--service", "api", "--addr", "127.0.0.1:1", "--check-interval", "soon"}, `invalid value "soon" for --check-interval`},
		{[]string{"--config", "/nonexistent.conf"}, "regagent: --config /nonexistent.conf: open /nonexistent.conf"},
	} {
		p := startProcess(t, tt.args...)
		if code := p.wait(t, shortWait); code != exitUsage {
			t.Errorf("%v: exit code %d, want 2", tt.args, code)
		}
		if !strings.Contains(p.stderr.String(), tt.want) {
			t.Errorf("%v: stderr %q, want %q", tt.args, p.stderr.String(), tt.want)
		}
	}
}
