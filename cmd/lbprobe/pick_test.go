package main

import (
	"strings"
	"testing"
)

func TestPickDistributionLeastLatencyAvoidsTheSlowBackend(t *testing.T) {
	fast, slow, _ := fastSlowDown(t)
	fast2 := newFast(t, "fast2")
	target := "static:///" + strings.Join([]string{fast.Addr(), fast2, slow.Addr()}, ",")

	picks := func(policy string) map[string]pickResult {
		t.Helper()
		// -n after the target, as an operator types it.
		res := lbprobe(t, append([]string{"pick", target, "-n", "1000", "--policy", policy, "--json"}, probeArgs...)...)
		if res.code != exitOK {
			t.Fatalf("%s: exit code %d, want 0\n%s", policy, res.code, res)
		}
		rep := decode[pickReport](t, res)
		if rep.N != 1000 || rep.Failed != 0 || rep.Policy != policy || len(rep.Picks) != 3 {
			t.Fatalf("%s: report %+v", policy, rep)
		}
		out := map[string]pickResult{}
		total := 0
		for _, p := range rep.Picks {
			out[p.Addr] = p
			total += p.Picks
		}
		if total != 1000 {
			t.Fatalf("%s: %d picks in all, want 1000", policy, total)
		}
		t.Logf("%s: fast %d, fast2 %d, slow %d", policy, out[fast.Addr()].Picks, out[fast2].Picks, out[slow.Addr()].Picks)
		return out
	}

	ll := picks("least_latency")
	if n := ll[slow.Addr()].Picks; n != 0 {
		t.Errorf("least_latency sent %d of 1000 picks to the slow backend, want 0", n)
	}
	rr := picks("round_robin")
	for addr, p := range rr {
		if p.Picks < 333 || p.Picks > 334 {
			t.Errorf("round_robin gave %s %d picks, want 333 or 334", addr, p.Picks)
		}
		if p.Share < 0.333 || p.Share > 0.334 {
			t.Errorf("round_robin share of %s = %v", addr, p.Share)
		}
	}

	// The table says the same for people.
	res := lbprobe(t, append([]string{"pick", "-n", "300", "--policy", "round_robin", target}, probeArgs...)...)
	r := cells(t, res.stdout, slow.Addr())
	if r["PICKS"] != "100" || r["SHARE"] != "33.3%" {
		t.Errorf("slow row %q\n%s", r, res.stdout)
	}
	if !strings.Contains(res.stdout, "300 picks under round_robin") {
		t.Errorf("footer missing:\n%s", res.stdout)
	}
}

func TestPickSkipsUnhealthyAndReportsExitCode(t *testing.T) {
	fast, _, down := fastSlowDown(t)
	res := lbprobe(t, append([]string{"pick", "static:///" + fast.Addr() + "," + down.Addr(), "-n", "50", "--policy", "round_robin", "--json"}, probeArgs...)...)
	if res.code != exitSome {
		t.Fatalf("exit code %d, want 1\n%s", res.code, res)
	}
	rep := decode[pickReport](t, res)
	for _, p := range rep.Picks {
		switch p.Addr {
		case fast.Addr():
			if p.Picks != 50 {
				t.Errorf("fast got %d of 50 picks", p.Picks)
			}
		case down.Addr():
			if p.Picks != 0 || p.Eligible || !strings.HasPrefix(p.Why, "unhealthy") {
				t.Errorf("down: %+v", p)
			}
		}
	}
}
