package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/etcdtest"
)

// syncBuffer is a bytes.Buffer safe for the servers and the client writing
// at once.
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

// answers parses the client's summary line into calls by server ID.
func answers(t *testing.T, text string) map[string]int {
	t.Helper()
	m := regexp.MustCompile(`answers by server: (.*)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no client summary in output:\n%s", text)
	}
	by := map[string]int{}
	for _, part := range strings.Split(m[1], ", ") {
		id, n, _ := strings.Cut(part, " ")
		by[id], _ = strconv.Atoi(n)
	}
	return by
}

// TestBothRoles runs three registered servers (2, 10 and 20 ms) and the
// client in one process: every call is answered, and the smartroute
// balancer sends most of them to the fastest server.
func TestBothRoles(t *testing.T) {
	cluster := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out syncBuffer
	code := run(ctx, []string{"-role", "both", "-etcd", strings.Join(cluster.Endpoints(), ","), "-n", "150", "-timeout", "20s"}, &out)
	text := out.String()
	if code != 0 {
		t.Fatalf("exit code %d, want 0; output:\n%s", code, text)
	}
	by := answers(t, text)
	t.Logf("answers by server: %v", by)
	if got := by["s1"] + by["s2"] + by["s3"]; got != 150 {
		t.Errorf("answers %v add up to %d, want 150", by, got)
	}
	if by["s1"] <= by["s3"] {
		t.Errorf("answers %v: want the 2ms server s1 to take more than the 20ms server s3", by)
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		if !strings.Contains(text, "server "+id+": deregistered and stopped") {
			t.Errorf("server %s did not stop in order; output:\n%s", id, text)
		}
	}
}

// TestServerAndClientRoles runs the roles as separate invocations, as the
// doc comment shows: a server registers itself, a client reaches it through
// etcd, and on shutdown the server drains, then its key leaves etcd.
func TestServerAndClientRoles(t *testing.T) {
	cluster := etcdtest.Start(t)
	cli := cluster.Client(t)
	etcd := strings.Join(cluster.Endpoints(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	var srvOut syncBuffer
	srvDone := make(chan int, 1)
	go func() {
		srvDone <- run(srvCtx, []string{"-role", "server", "-etcd", etcd, "-service", "echo", "-id", "solo", "-drain", "300ms"}, &srvOut)
	}()
	key := "/services/echo/solo"
	waitKey(t, ctx, cli, key, func(kvs int, value string) bool { return kvs == 1 })

	var cliOut syncBuffer
	if code := run(ctx, []string{"-role", "client", "-etcd", etcd, "-service", "echo", "-n", "20", "-timeout", "20s"}, &cliOut); code != 0 {
		t.Fatalf("client exit code %d; output:\n%s", code, cliOut.String())
	}
	if by := answers(t, cliOut.String()); by["solo"] != 20 {
		t.Errorf("answers %v, want all 20 from solo", by)
	}

	stopServer()
	// Draining first: the value says so while the key is still there.
	waitKey(t, ctx, cli, key, func(kvs int, value string) bool {
		return kvs == 0 || strings.Contains(value, `"state":"draining"`)
	})
	select {
	case code := <-srvDone:
		if code != 0 {
			t.Fatalf("server exit code %d; output:\n%s", code, srvOut.String())
		}
	case <-ctx.Done():
		t.Fatal("server did not stop")
	}
	waitKey(t, ctx, cli, key, func(kvs int, _ string) bool { return kvs == 0 })
	for _, want := range []string{"server solo: draining for 300ms", "server solo: deregistered and stopped"} {
		if !strings.Contains(srvOut.String(), want) {
			t.Errorf("server output lacks %q:\n%s", want, srvOut.String())
		}
	}
}

// waitKey polls key until cond holds for its count and value, or fails the
// test after 30 s.
func waitKey(t *testing.T, ctx context.Context, cli *clientv3.Client, key string, cond func(kvs int, value string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cli.Get(ctx, key)
		if err == nil {
			value := ""
			if len(resp.Kvs) > 0 {
				value = string(resp.Kvs[0].Value)
			}
			if cond(len(resp.Kvs), value) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting on %s (last error %v)", key, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadRole checks that an unknown role exits 2 and says why.
func TestBadRole(t *testing.T) {
	var out syncBuffer
	if code := run(context.Background(), []string{"-role", "proxy"}, &out); code != 2 || !strings.Contains(out.String(), `-role "proxy"`) {
		t.Errorf("exit code %d, output %q: want 2 and a message naming the role", code, out.String())
	}
}
