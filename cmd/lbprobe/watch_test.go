package main

import (
	"context"
	"fmt"
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

	if err := reg.Close(context.Background()); err != nil {
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

// lbprobe watch on a quiet, healthy cluster prints the set and nothing
// else for 20 s: no "error ... etcd did not answer" followed by
// "recovered", as when the resolver judged a silent watch by progress
// requests etcd leaves unanswered. A real fault is still reported (a cut
// off member, a member without a leader), and its end.
func TestWatchIsQuietOnAQuietCluster(t *testing.T) {
	t.Parallel()
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d members", members), func(t *testing.T) {
			t.Parallel()
			c := etcdtest.Start(t, etcdtest.WithMembers(members))
			cli := c.Client(t)
			register(t, cli, registry.Instance{Service: "api", ID: "a", Addr: "127.0.0.1:8001"})

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			args := []string{"watch", "etcd:///api", "--check", "tcp", "--interval", "1s",
				"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-dial-timeout", "2s"}
			go func() { done <- run(ctx, args, &out, &errb) }()
			waitFor(t, watchWait, "the initial set", func() bool { return strings.Contains(out.String(), " added ") })
			index := c.RaftIndex()

			quiet := time.NewTimer(20 * time.Second) // the scenario: 20 s of silence
			select {
			case <-quiet.C:
			case code := <-done:
				t.Fatalf("watch exited with %d during the quiet period\n%s%s", code, out.String(), errb.String())
			}
			for line := range strings.SplitSeq(out.String(), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[1] != "added" && f[1] != "health" {
					t.Errorf("on a quiet, healthy cluster: %s", line)
				}
			}
			if grown := c.RaftIndex() - index; grown != 0 {
				t.Errorf("%d raft entries written while watching", grown)
			}

			faulted := time.Now()
			var restore func()
			if members == 1 {
				restore = c.Member(0).CutOff(t)
			} else {
				c.Member(1).Kill(t)
				c.Member(2).Kill(t)
				restore = func() {
					c.Member(1).Restart(t)
					c.Member(2).Restart(t)
				}
			}
			waitFor(t, watchWait, "an error line", func() bool { return strings.Contains(out.String(), " error ") })
			t.Logf("error line %v after the fault", time.Since(faulted).Round(10*time.Millisecond))
			restore()
			waitFor(t, 2*watchWait, "a recovered line", func() bool { return strings.Contains(out.String(), " recovered ") })
			cancel()
			if code := <-done; code != exitOK {
				t.Errorf("exit code %d\n%s", code, errb.String())
			}
			t.Logf("lbprobe watch:\n%s", out.String())
		})
	}
}
