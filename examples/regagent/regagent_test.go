package main

import (
	"context"
	"encoding/json"
	"net"
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

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
)

// TestSidecarWithSampleConfig does what README.md shows: the demo service
// runs, cmd/regagent runs beside it with testdata/regagent.conf (only the
// addresses and, to keep the test short, the check and drain timings given
// on the command line, which win over the file), and the instance appears
// in etcd as the file describes it, leaves when the health check fails,
// returns when it passes, and drains then leaves on SIGTERM, with exit 0.
func TestSidecarWithSampleConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/regagent")
	}
	bin := buildRegagent(t)
	cluster := etcdtest.Start(t)
	cli := cluster.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The service.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svcCtx, stopService := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(svcCtx, ln, newService("hello-1")) }()
	defer func() { stopService(); <-served }()
	addr := ln.Addr().String()

	// The sidecar, configured by the sample file.
	var stderr syncBuffer
	cmd := exec.Command(bin,
		"--config", filepath.Join("testdata", "regagent.conf"),
		"--etcd-endpoints", strings.Join(cluster.Endpoints(), ","),
		"--addr", addr,
		"--check-target", "http://"+addr+"/healthz",
		"--check-interval", "100ms", "--check-timeout", "100ms",
		"--drain-period", "500ms",
		"--listen", "off")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no REGAGENT_* from the test's environment
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("regagent stderr:\n%s", stderr.String())
		}
	}()

	const key = "/services/api/hello-1"
	inst := waitInstance(t, ctx, cli, key, func(i *registry.Instance) bool { return i != nil })
	want := registry.Instance{Service: "api", ID: "hello-1", Addr: addr, Weight: 1, Zone: "local-a", Version: "v1.0.0",
		Labels: map[string]string{"team": "examples", "canary": "false"}}
	if inst.State == registry.InstanceUp {
		inst.State = ""
	}
	if !inst.Equal(want) {
		t.Errorf("registered %+v, want %+v", *inst, want)
	}
	if resp, err := cli.Get(ctx, key); err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Errorf("key %s not attached to a lease: %v %v", key, resp, err)
	}

	post(t, "http://"+addr+"/healthz/fail")
	waitInstance(t, ctx, cli, key, func(i *registry.Instance) bool { return i == nil })
	post(t, "http://"+addr+"/healthz/ok")
	waitInstance(t, ctx, cli, key, func(i *registry.Instance) bool { return i != nil && !i.Draining() })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitInstance(t, ctx, cli, key, func(i *registry.Instance) bool { return i == nil || i.Draining() })
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Fatalf("regagent exited with %v, want 0", err)
		}
	case <-ctx.Done():
		t.Fatal("regagent did not exit after SIGTERM")
	}
	if resp, err := cli.Get(ctx, key); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("key %s still in etcd after the agent exited: %v %v", key, resp, err)
	}
}

// TestDemoServiceHealthFlips checks the demo service's own endpoints.
func TestDemoServiceHealthFlips(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, newService("hello-1")) }()
	defer func() { cancel(); <-served }()
	base := "http://" + ln.Addr().String()

	for _, step := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 200},
		{"GET", "/healthz", 200},
		{"POST", "/healthz/fail", 200},
		{"GET", "/healthz", 503},
		{"POST", "/healthz/ok", 200},
		{"GET", "/healthz", 200},
		{"GET", "/nope", 404},
	} {
		req, _ := http.NewRequest(step.method, base+step.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Errorf("%s %s: %d, want %d", step.method, step.path, resp.StatusCode, step.want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// buildRegagent builds cmd/regagent into a temporary directory.
func buildRegagent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "regagent")
	// go test puts its own GOROOT/bin first in PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build cmd/regagent: %v", err)
	}
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/smartroute/smartroute/cmd/regagent").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/regagent: %v\n%s", err, out)
	}
	return bin
}

// waitInstance polls key until cond holds for its decoded instance (nil
// when the key is absent), or fails the test after 30 s.
func waitInstance(t *testing.T, ctx context.Context, cli *clientv3.Client, key string, cond func(*registry.Instance) bool) *registry.Instance {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var inst *registry.Instance
		resp, err := cli.Get(ctx, key)
		if err == nil && len(resp.Kvs) > 0 {
			i, derr := registry.Decode(registry.DefaultPrefix, key, resp.Kvs[0].Value)
			if derr != nil {
				t.Fatalf("decode %s: %v", resp.Kvs[0].Value, derr)
			}
			inst = &i
		}
		if err == nil && cond(inst) {
			return inst
		}
		if time.Now().After(deadline) {
			raw, _ := json.Marshal(inst)
			t.Fatalf("timed out waiting on %s (now %s, last error %v)", key, raw, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
