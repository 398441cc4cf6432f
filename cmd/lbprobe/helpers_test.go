package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// runTimeout bounds one in-process run of lbprobe.
const runTimeout = 30 * time.Second

// result is what one run of lbprobe did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// lbprobe runs the program in process with args.
func lbprobe(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// lbprobeProcess runs the program as a process: the test binary acting as
// lbprobe (see TestMain), as a shell would run it.
func lbprobeProcess(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunAsMain+"=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run lbprobe: %v", err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// etcdFlagsFor returns the flags that reach c.
func etcdFlagsFor(c *etcdtest.Cluster) []string {
	return []string{"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-dial-timeout", "5s"}
}

// register registers an instance, deregistered at cleanup.
func register(t testing.TB, cli *clientv3.Client, inst registry.Instance) *registry.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := registry.Register(ctx, cli, inst, registry.WithLogger(discard))
	if err != nil {
		t.Fatalf("register %v: %v", inst, err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// decode parses a --json output.
func decode[T any](t testing.TB, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, r)
	}
	return v
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader on
// different goroutines.
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

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeFile writes data to a file in a temporary directory.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cells returns the cells of the table row whose first cell is first, by
// column name. Columns are cut where the header's names start, as the
// table aligns them, so cells may hold spaces.
func cells(t testing.TB, table, first string) map[string]string {
	t.Helper()
	lines := strings.Split(table, "\n")
	header := lines[0]
	type col struct {
		name  string
		start int
	}
	var cols []col
	for i := 0; i < len(header); {
		for i < len(header) && header[i] == ' ' {
			i++
		}
		j := i
		for j < len(header) && header[j] != ' ' {
			j++
		}
		if j > i {
			cols = append(cols, col{header[i:j], i})
		}
		i = j
	}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) == 0 || f[0] != first {
			continue
		}
		out := map[string]string{}
		for k, c := range cols {
			end := len(line)
			if k+1 < len(cols) {
				end = min(cols[k+1].start, len(line))
			}
			if c.start < end {
				out[c.name] = strings.TrimSpace(line[c.start:end])
			}
		}
		return out
	}
	t.Fatalf("no row for %s in:\n%s", first, table)
	return nil
}

// tlsServerConfig serves cert.
func tlsServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// newFast starts another fast HTTP backend and returns its address.
func newFast(t testing.TB, name string) string {
	return testbackend.MustHTTP(t, testbackend.WithName(name)).Addr()
}
