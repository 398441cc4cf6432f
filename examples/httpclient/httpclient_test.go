package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// TestHTTPClientRoutesToRegisteredInstances runs the program against a
// real etcd holding two instances of "api", one fast and one slow: every
// request is answered, the table lists both endpoints with the requests
// they took, and the fast one took more.
func TestHTTPClientRoutesToRegisteredInstances(t *testing.T) {
	cluster := etcdtest.Start(t)
	cli := cluster.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fast := testbackend.MustHTTP(t, testbackend.WithName("fast"), testbackend.WithLatency(time.Millisecond))
	// 250 ms: slower than any stall a loaded machine adds to the fast
	// one's answers. The estimate believes a spike at once, so with 50 ms
	// one stalled first request to the fast endpoint made it look the
	// slower for the rest of the run (1 request of 30).
	slow := testbackend.MustHTTP(t, testbackend.WithName("slow"), testbackend.WithLatency(250*time.Millisecond))
	for _, b := range []*testbackend.HTTP{fast, slow} {
		reg, err := registry.Register(ctx, cli, registry.Instance{Service: "api", ID: b.Name(), Addr: b.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close(context.Background()) })
	}

	var out bytes.Buffer
	code := run(ctx, []string{"-etcd", strings.Join(cluster.Endpoints(), ","), "-service", "api", "-n", "30"}, &out)
	text := out.String()
	if code != 0 {
		t.Fatalf("exit code %d, want 0; output:\n%s", code, text)
	}
	if n := strings.Count(text, "GET http://api/: 200 OK in "); n != 30 {
		t.Errorf("%d answers with 200 OK, want 30; output:\n%s", n, text)
	}
	requests := func(addr string) int {
		m := regexp.MustCompile(regexp.QuoteMeta(addr) + `\s+\S+\s+\S+\s+(\d+)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("endpoint %s missing from the table; output:\n%s", addr, text)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	nf, ns := requests(fast.Addr()), requests(slow.Addr())
	if nf+ns != 30 {
		t.Errorf("the table counts %d+%d requests, want 30", nf, ns)
	}
	if nf <= ns {
		t.Errorf("fast endpoint took %d requests, slow one %d: want the fast one to take more", nf, ns)
	}
	if int64(nf) != fast.Requests() || int64(ns) != slow.Requests() {
		t.Errorf("table says %d/%d requests, the backends saw %d/%d", nf, ns, fast.Requests(), slow.Requests())
	}
}

// TestHTTPClientReportsNoEndpoint checks the message when nothing is
// registered under the service: exit 1 and an error that says so.
func TestHTTPClientReportsNoEndpoint(t *testing.T) {
	cluster := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, []string{"-etcd", strings.Join(cluster.Endpoints(), ","), "-service", "nothing-here", "-n", "1"}, &out)
	if code != 1 || !strings.Contains(out.String(), "no healthy endpoint") {
		t.Errorf("exit code %d, output %q: want 1 and a message about no healthy endpoint", code, out.String())
	}
}
