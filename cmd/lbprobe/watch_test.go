package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/registry"
)

// watchWait bounds the wait for one event.
const watchWait = 30 * time.Second

func TestWatchPrintsRegisterHealthChangeDrainAndDeregister(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	b := testbackend.MustHTTP(t, testbackend.WithName("b"))
	other := testbackend.MustHTTP(t, testbackend.WithName("other"))
	register(t, cli, registry.Instance{Service: "api", ID: "other", Addr: other.Addr()})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	args := append([]string{"watch", "etcd:///api", "--check", "http", "--interval", "20ms", "--timeout", "300ms", "--rise", "1", "--fall", "1"}, etcdFlagsFor(c)...)
	go func() { done <- run(ctx, args, &out, &errb) }()

	// saw waits for a line matching re.
	saw := func(what, re string) {
		t.Helper()
		rx := regexp.MustCompile(`(?m)` + re)
		waitFor(t, watchWait, what, func() bool { return rx.MatchString(out.String()) })
	}
	q := regexp.QuoteMeta
	// The current set first, and its health.
	saw("the initial set", `^\S+  added      `+q(other.Addr())+` +state=up weight=1 key=/services/api/other rev=\d+ lease=[0-9a-f]+$`)
	saw("other healthy", `^\S+  health     `+q(other.Addr())+` +unknown->healthy rtt=`)

	reg := register(t, cli, registry.Instance{Service: "api", ID: "b", Addr: b.Addr(), Zone: "z1"})
	saw("b added", `^\S+  added      `+q(b.Addr())+` +state=up weight=1 zone=z1 key=/services/api/b `)
	saw("b healthy", `^\S+  health     `+q(b.Addr())+` +unknown->healthy`)

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	saw("b unhealthy", `^\S+  health     `+q(b.Addr())+` +healthy->unhealthy error: .*refused`)

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if err := reg.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	saw("b draining", `^\S+  changed    `+q(b.Addr())+` +state up->draining state=draining`)

	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	saw("b removed", `^\S+  removed    `+q(b.Addr())+` `)

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit code after interrupt %d, want 0\nstderr: %s", code, errb.String())
		}
	case <-time.After(watchWait):
		t.Fatal("watch did not return after its context was cancelled")
	}
	if errb.String() != "" {
		t.Errorf("stderr: %s", errb.String())
	}
	t.Logf("lbprobe watch etcd:///api:\n%s", out.String())
	// Events come in order: nothing about b before it was added or after
	// it was removed.
	var bLines []string
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, " "+b.Addr()+" ") {
			bLines = append(bLines, strings.Fields(line)[1])
		}
	}
	want := []string{"added", "health", "health", "changed", "removed"}
	if strings.Join(bLines, ",") != strings.Join(want, ",") {
		t.Errorf("events of b: %v, want %v\n%s", bLines, want, out.String())
	}
}

func TestWatchJSONLines(t *testing.T) {
	b := testbackend.MustHTTP(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--json", "--interval", "20ms", "--rise", "1", "static:///" + b.Addr()}, &out, &errb)
	}()
	waitFor(t, watchWait, "a health event", func() bool { return strings.Contains(out.String(), `"event":"health"`) })
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit code %d\n%s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	first := decode[watchEvent](t, result{stdout: lines[0]})
	if first.Event != "added" || first.Addr != b.Addr() || first.State != "up" || first.Source == nil || first.Source.Kind != "static" || first.Time.IsZero() {
		t.Errorf("first event %+v", first)
	}
	second := decode[watchEvent](t, result{stdout: lines[1]})
	if second.Event != "health" || second.Health != "healthy" || second.Previous != "unknown" || second.RTTMS == nil {
		t.Errorf("second event %+v", second)
	}
}
