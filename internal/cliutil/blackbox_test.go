package cliutil_test

// Black-box tests of both commands: they are built with go build into a
// temporary directory and run as a user runs them, against real etcd
// servers (plain, TLS with client certificates, authentication), and the
// tests read only what a user sees: exit codes, stdout, stderr, /healthz
// and /metrics.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// Bounds of the waits; nothing waits them out when things go well.
const (
	runTimeout  = 60 * time.Second
	stateWait   = 30 * time.Second
	buildTimout = 5 * time.Minute
)

// bins are the two commands, built once per run of TestCommands.
type bins struct{ regagent, lbprobe string }

func build(t *testing.T) bins {
	t.Helper()
	dir := t.TempDir()
	b := bins{regagent: filepath.Join(dir, "regagent"), lbprobe: filepath.Join(dir, "lbprobe")}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimout)
	defer cancel()
	for bin, pkg := range map[string]string{b.regagent: "../../cmd/regagent", b.lbprobe: "../../cmd/lbprobe"} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return b
}

// result is one finished run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + string(rune('0'+r.code)) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// cleanEnv is the environment of every run: no variable of the test's own.
func cleanEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, extra...)
}

// run runs bin to its end.
func run(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	return result{code, out.String(), errb.String()}
}

// syncBuffer is a bytes.Buffer for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a command left running until the test signals it.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

func start(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", filepath.Base(bin), p.stdout, p.stderr)
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(stateWait):
		t.Fatal("still running after SIGTERM")
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(stateWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", stateWait, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// logRecord finds the first JSON log line with message msg.
func logRecord(logs, msg string) map[string]any {
	s := bufio.NewScanner(strings.NewReader(logs))
	for s.Scan() {
		var rec map[string]any
		if json.Unmarshal(s.Bytes(), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// healthzAddr is the address regagent serves /healthz on, from its logs.
func (p *process) healthzAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, "regagent to serve /healthz", func() bool {
		if rec := logRecord(p.stderr.String(), "serving /metrics and /healthz"); rec != nil {
			addr, _ = rec["addr"].(string)
		}
		return addr != ""
	})
	return addr
}

func get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealthz waits until /healthz answers code with body holding want.
func waitHealthz(t *testing.T, addr string, code int, want string) string {
	t.Helper()
	var body string
	waitFor(t, "/healthz "+want, func() bool {
		var c int
		c, body = get(addr, "/healthz")
		return c == code && strings.Contains(body, want)
	})
	return body
}

// expectError checks a failed lbprobe run with -o json: the exit code, one
// line on stderr holding want, and the same error as JSON on stdout with
// its cause.
func expectError(t *testing.T, r result, code int, cause cliutil.Cause, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\n%s", r.code, code, r)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "lbprobe: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("stderr is not one line naming %q:\n%s", want, r)
	}
	var doc cliutil.ErrorDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Errorf("stdout is not the JSON error: %v\n%s", err, r)
		return
	}
	if doc.Cause != cause || doc.ExitCode != code || !strings.Contains(doc.Error, want) {
		t.Errorf("JSON error %+v, want cause %q and code %d", doc, cause, code)
	}
}

func TestCommandsBlackBox(t *testing.T) {
	b := build(t)
	backend := testbackend.MustHTTP(t, testbackend.WithName("up"))

	t.Run("plain etcd", func(t *testing.T) { plainEtcd(t, b, backend) })
	t.Run("TLS etcd", func(t *testing.T) { tlsEtcd(t, b, backend) })
	t.Run("etcd with authentication", func(t *testing.T) { authEtcd(t, b, backend) })
}

func plainEtcd(t *testing.T, b bins, backend *testbackend.HTTP) {
	c := etcdtest.Start(t)
	eps := "--etcd-endpoints=" + strings.Join(c.Endpoints(), ",")
	agentArgs := []string{eps, "--service", "api", "--id", "up", "--addr", backend.Addr(), "--zone", "z1", "--label", "canary=true",
		"--check-interval", "100ms", "--check-timeout", "100ms", "--rise", "1", "--ttl", "2s", "--drain-period", "0s",
		"--listen", "127.0.0.1:0", "--log-format", "json"}

	t.Run("version is a boolean of the command line only", func(t *testing.T) {
		for _, bin := range []string{b.regagent, b.lbprobe} {
			r := run(t, bin, nil, "--version")
			if r.code != 0 || !strings.HasPrefix(r.stdout, filepath.Base(bin)+" ") || r.stderr != "" {
				t.Errorf("%s --version: %s", bin, r)
			}
		}
		// Neither the old shared variable nor the new one turns the
		// sidecar into a program that prints its version and exits 0.
		for _, v := range []string{"SMARTROUTE_VERSION=1", "REGAGENT_VERSION=true"} {
			r := run(t, b.regagent, []string{v}, "--addr", "127.0.0.1:1")
			if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, "--service is required") {
				t.Errorf("regagent with %s: %s", v, r)
			}
		}
		if r := run(t, b.regagent, nil, "--version=maybe"); r.code != cliutil.ExitUsage {
			t.Errorf("--version=maybe: %s", r)
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"endpoints", "--bogus", "static:///127.0.0.1:1"},
			{"endpoints", "-o", "yaml", "static:///127.0.0.1:1"},
			{"endpoints", "etcd:///api", "--etcd-endpoints", "http://root:s3cret@127.0.0.1:2379"},
			{"endpoints", "etcd:///api", "--etcd-user", "root"},
		} {
			r := run(t, b.lbprobe, nil, args...)
			if r.code != cliutil.ExitUsage || strings.Contains(r.stderr, "s3cret") {
				t.Errorf("lbprobe %v: %s", args, r)
			}
		}
		for _, args := range [][]string{
			{"--bogus"},
			{"--service", "api", "--addr", "127.0.0.1:1", "--ttl", "1500ms"},
			{"--service", "api", "--addr", "127.0.0.1:1", "--etcd-endpoints", "http://root:s3cret@127.0.0.1:2379"},
		} {
			r := run(t, b.regagent, nil, args...)
			if r.code != cliutil.ExitUsage || strings.Contains(r.stderr, "s3cret") || !strings.Contains(r.stderr, "regagent -h") {
				t.Errorf("regagent %v: %s", args, r)
			}
		}
		r := run(t, b.regagent, nil, "--service", "api", "--addr", "127.0.0.1:1", "--ttl", "1500ms")
		if !strings.Contains(r.stderr, "--ttl 1.5s is not a whole number of seconds") {
			t.Errorf("--ttl 1500ms: %s", r)
		}
		// With -o json a usage error is on stdout too.
		r = run(t, b.lbprobe, nil, "endpoints", "--json", "--bogus", "static:///127.0.0.1:1")
		var doc cliutil.ErrorDoc
		if json.Unmarshal([]byte(r.stdout), &doc) != nil || doc.ExitCode != cliutil.ExitUsage || !strings.Contains(doc.Error, "--bogus") {
			t.Errorf("usage error with --json: %s", r)
		}
	})

	t.Run("regagent registers, logs text values in JSON and drains", func(t *testing.T) {
		p := start(t, b.regagent, nil, agentArgs...)
		addr := p.healthzAddr(t)
		waitHealthz(t, addr, http.StatusOK, "registered as /services/api/up")
		rec := logRecord(p.stderr.String(), "registry: registered")
		if rec == nil || rec["ttl"] != "2s" {
			t.Errorf("the registration's log record %v: want ttl \"2s\"", rec)
		}

		// lbprobe sees it, labels and all, in every view.
		r := run(t, b.lbprobe, nil, "endpoints", "etcd:///api", eps, "--count", "1", "--output=json")
		var rep struct {
			Endpoints []struct {
				Addr, Zone, State string
				Weight            int
				Labels            map[string]string
			}
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Endpoints) != 1 ||
			rep.Endpoints[0].Labels["canary"] != "true" || rep.Endpoints[0].Zone != "z1" || rep.Endpoints[0].State != "up" || rep.Endpoints[0].Weight != 1 {
			t.Errorf("endpoints -o json: %s", r)
		}
		for _, args := range [][]string{
			{"endpoints", "etcd:///api", eps, "--count", "1"},
			{"endpoints", "etcd:///api", eps, "--count", "1", "-o", "wide"},
			{"pick", "etcd:///api", eps, "--count", "1", "-n", "10"},
		} {
			r := run(t, b.lbprobe, nil, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "canary=true") || !strings.Contains(r.stdout, "z1") || !strings.Contains(r.stdout, "LABELS") {
				t.Errorf("lbprobe %v shows no labels and zone: %s", args, r)
			}
		}
		if code := p.stop(t); code != 0 {
			t.Errorf("regagent exit %d after SIGTERM, want 0", code)
		}
	})

	t.Run("lbprobe exit codes", func(t *testing.T) {
		if r := run(t, b.lbprobe, nil, "endpoints", "static:///"+backend.Addr()+",127.0.0.1:1", "--count", "1"); r.code != cliutil.ExitSome ||
			!strings.Contains(r.stdout, "1 of 2 endpoints healthy (http GET /, 1 check each") {
			t.Errorf("some unhealthy: %s", r)
		}
		if r := run(t, b.lbprobe, nil, "endpoints", "static:///127.0.0.1:1", "--count", "1"); r.code != cliutil.ExitNone {
			t.Errorf("none healthy: %s", r)
		}
		r := run(t, b.lbprobe, nil, "endpoints", "etcd:///api", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "2s", "-o", "json")
		expectError(t, r, cliutil.ExitEtcd, cliutil.CauseUnreachable, "etcd unreachable: no answer from http://127.0.0.1:1 within 2s (http://127.0.0.1:1: connection refused)")
		r = run(t, b.lbprobe, nil, "endpoints", "etcd:///nothing", eps, "--json")
		expectError(t, r, cliutil.ExitEtcd, "", "resolve etcd:///nothing: no endpoints")
	})

	t.Run("config file and environment prefix", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "lbprobe.conf")
		if err := os.WriteFile(conf, []byte("# shared by every command\ncheck tcp\ncount 2\nkek-id unused\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, b.lbprobe, []string{"LBPROBE_CONFIG=" + conf, "LBPROBE_OUTPUT=json", "SMARTROUTE_COUNT=7"}, "endpoints", "static:///"+backend.Addr())
		var rep struct {
			Check string
			Count int
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Check != "tcp" || rep.Count != 2 {
			t.Errorf("config file and environment: %s", r)
		}
		if !strings.Contains(r.stderr, "SMARTROUTE_COUNT is no longer read: set LBPROBE_COUNT instead") {
			t.Errorf("no word on the old variable: %s", r)
		}
	})

	t.Run("without etcd regagent says why at once and exits 3 on SIGTERM", func(t *testing.T) {
		p := start(t, b.regagent, nil, append(agentArgs, "--id", "lonely", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "1s")...)
		addr := p.healthzAddr(t)
		began := time.Now()
		body := waitHealthz(t, addr, http.StatusServiceUnavailable, "etcd unreachable: no answer from http://127.0.0.1:1 within 1s")
		waitFor(t, "register_failures_total to count", func() bool {
			_, m := get(addr, "/metrics")
			return strings.Contains(m, "smartroute_regagent_register_failures_total 1") || strings.Contains(m, "smartroute_regagent_register_failures_total 2")
		})
		t.Logf("after %v: %s", time.Since(began), body)
		if code := p.stop(t); code != cliutil.ExitEtcd {
			t.Errorf("regagent exit %d after SIGTERM with etcd never reached, want %d", code, cliutil.ExitEtcd)
		}
	})

	t.Run("watch without etcd says so and exits 3 on SIGTERM", func(t *testing.T) {
		p := start(t, b.lbprobe, nil, "watch", "etcd:///api", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "1s", "-o", "json")
		waitFor(t, "the error event", func() bool { return strings.Contains(p.stdout.String(), `"event":"error"`) })
		if !strings.Contains(p.stdout.String(), "etcd unreachable") {
			t.Errorf("the error event does not name the cause: %s", p.stdout)
		}
		if code := p.stop(t); code != cliutil.ExitEtcd {
			t.Errorf("watch exit %d after SIGTERM with etcd never reached, want %d", code, cliutil.ExitEtcd)
		}
	})
}

func tlsEtcd(t *testing.T, b bins, backend *testbackend.HTTP) {
	dir := t.TempDir()
	ca := certgen.NewCA(t, "etcd-ca")
	srvCert, srvKey, caFile := certgen.WriteFiles(t, dir, "etcd", ca, ca.Peer(t, []string{"127.0.0.1", "localhost"}))
	cliCert, cliKey, _ := certgen.WriteFiles(t, dir, "client", ca, ca.Client(t, "client"))
	other := certgen.NewCA(t, "other-ca")
	_, _, otherCA := certgen.WriteFiles(t, t.TempDir(), "x", other, other.Client(t, "x"))
	c := etcdtest.Start(t, etcdtest.WithClientTLS(etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}))
	plain := etcdtest.Start(t)
	hostPorts := func(c *etcdtest.Cluster) string {
		var out []string
		for _, ep := range c.Endpoints() {
			out = append(out, ep[strings.Index(ep, "://")+3:])
		}
		return strings.Join(out, ",")
	}
	register(t, c.Client(t), registry.Instance{Service: "api", ID: "up", Addr: backend.Addr()})
	lb := func(extra ...string) result {
		return run(t, b.lbprobe, nil, append([]string{"endpoints", "etcd:///api", "--count", "1", "-o", "json"}, extra...)...)
	}
	ep := "--etcd-endpoints=" + hostPorts(c)

	if r := lb(ep, "--etcd-cacert", caFile, "--etcd-cert", cliCert, "--etcd-key", cliKey); r.code != 0 {
		t.Errorf("with the right CA and client certificate: %s", r)
	}
	expectError(t, lb(ep, "--etcd-cacert", caFile), cliutil.ExitEtcd, cliutil.CauseTLSClientCertificate, "requires a client certificate and none was given")
	expectError(t, lb(ep, "--etcd-cacert", otherCA, "--etcd-cert", cliCert, "--etcd-key", cliKey), cliutil.ExitEtcd, cliutil.CauseTLSUnknownAuthority,
		`is signed by an unknown authority (issuer "CN=etcd-ca`)
	expectError(t, lb("--etcd-endpoints=http://"+hostPorts(c)), cliutil.ExitEtcd, cliutil.CauseTLSExpected, "expects TLS and the client spoke plain HTTP")
	expectError(t, lb("--etcd-endpoints="+hostPorts(plain), "--etcd-cacert", caFile), cliutil.ExitEtcd, cliutil.CauseTLSUnsupported, "speaks plain HTTP, not TLS")
	if r := lb("--etcd-endpoints=http://"+hostPorts(c), "--etcd-cacert", caFile); r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, "is http:// but --etcd-cacert") {
		t.Errorf("http:// with --etcd-cacert: %s", r)
	}

	// regagent names the same cause on /healthz, from the first attempt.
	p := start(t, b.regagent, nil, ep, "--etcd-cacert", caFile, "--etcd-dial-timeout", "2s", "--service", "api", "--id", "agent",
		"--addr", backend.Addr(), "--listen", "127.0.0.1:0", "--log-format", "json", "--check-interval", "100ms", "--check-timeout", "100ms")
	waitHealthz(t, p.healthzAddr(t), http.StatusServiceUnavailable, "requires a client certificate and none was given")
	p.stop(t)
}

func authEtcd(t *testing.T, b bins, backend *testbackend.HTTP) {
	const rootPW = "s3cret"
	c := etcdtest.Start(t, etcdtest.WithAuth(etcdtest.Auth{RootPassword: rootPW}))
	root := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), stateWait)
	defer cancel()
	if _, err := root.RoleAdd(ctx, "svc-reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleGrantPermission(ctx, "svc-reader", "/services/", clientv3.GetPrefixRangeEnd("/services/"), clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	c.AddUser(t, "reader", "pw", "svc-reader")
	register(t, root, registry.Instance{Service: "api", ID: "up", Addr: backend.Addr()})
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(rootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// bcrypt under a loaded machine: generous.
	eps := []string{"--etcd-endpoints=" + strings.Join(c.Endpoints(), ","), "--etcd-dial-timeout", "20s"}
	lb := func(env []string, extra ...string) result {
		return run(t, b.lbprobe, env, append(append([]string{"endpoints", "etcd:///api", "--count", "1", "-o", "json"}, eps...), extra...)...)
	}

	if r := lb(nil, "--etcd-user", "root", "--etcd-password-file", pwFile); r.code != 0 || strings.Contains(r.stderr, rootPW) {
		t.Errorf("with --etcd-password-file: %s", r)
	}
	if r := lb([]string{"LBPROBE_ETCD_PASSWORD=" + rootPW}, "--etcd-user", "root"); r.code != 0 {
		t.Errorf("with LBPROBE_ETCD_PASSWORD: %s", r)
	}
	r := lb(nil, "--etcd-user", "root:nope")
	expectError(t, r, cliutil.ExitEtcd, cliutil.CauseAuthFailed, `etcd refused user "root": authentication failed, wrong user name or password`)
	if !strings.Contains(r.stderr, "--etcd-password-file") {
		t.Errorf("the fix is not named: %s", r)
	}
	expectError(t, lb(nil), cliutil.ExitEtcd, cliutil.CauseAuthRequired, "etcd has authentication on and the request named no user")
	expectError(t, run(t, b.lbprobe, []string{"LBPROBE_ETCD_PASSWORD=pw"}, append([]string{"certs", "list", "--etcd-user", "reader", "-o", "json"}, eps...)...),
		cliutil.ExitEtcd, cliutil.CausePermissionDenied, `etcd user "reader" (roles: svc-reader) may not read /certs/*: permission denied; grant the user a role with read on /certs/: the role smartroute-reader`)
	if r := lb(nil, "--etcd-user", "root"); r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, "--etcd-user root has no password") {
		t.Errorf("a user without a password: %s", r)
	}

	// regagent: a wrong password and a user that may only read, named on
	// /healthz.
	agent := func(id string, env []string, extra ...string) *process {
		return start(t, b.regagent, env, append(append([]string{"--service", "api", "--id", id, "--addr", backend.Addr(),
			"--listen", "127.0.0.1:0", "--log-format", "json", "--check-interval", "100ms", "--check-timeout", "100ms"}, eps...), extra...)...)
	}
	wrong := agent("wrong", []string{"REGAGENT_ETCD_PASSWORD=nope"}, "--etcd-user", "root")
	waitHealthz(t, wrong.healthzAddr(t), http.StatusServiceUnavailable, `etcd refused user "root": authentication failed`)
	wrong.stop(t)
	ro := agent("readonly", []string{"REGAGENT_ETCD_PASSWORD=pw"}, "--etcd-user", "reader")
	waitHealthz(t, ro.healthzAddr(t), http.StatusServiceUnavailable, `etcd user "reader" (roles: svc-reader) may not write /services/api/readonly`)
	ro.stop(t)
	// A password on the command line is used, with a warning, and never
	// logged.
	loud := agent("loud", nil, "--etcd-user", "root:"+rootPW)
	waitHealthz(t, loud.healthzAddr(t), http.StatusOK, "registered")
	loud.stop(t)
	if logs := loud.stderr.String(); strings.Contains(strings.ReplaceAll(logs, "root:"+rootPW, ""), rootPW) ||
		!strings.Contains(logs, "shows the password in ps") {
		t.Errorf("stderr of an agent given root:password:\n%s", logs)
	}
}

// register registers inst, deregistered at cleanup.
func register(t *testing.T, cli *clientv3.Client, inst registry.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stateWait)
	defer cancel()
	r, err := registry.Register(ctx, cli, inst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
}
