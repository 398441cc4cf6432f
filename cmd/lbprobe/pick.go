package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Bounds of -n.
const (
	defaultPicks = 1000
	// maxPicks keeps a run within a second or so: a pick takes well
	// under a microsecond.
	maxPicks = 10_000_000
)

// pickReport is the output of the pick command and its --json document.
type pickReport struct {
	Target  string       `json:"target"`
	Check   string       `json:"check"`
	Count   int          `json:"count"`
	Policy  string       `json:"policy"`
	N       int          `json:"n"`
	Failed  int          `json:"failed"`
	Error   string       `json:"error,omitempty"`
	Healthy int          `json:"healthy"`
	Picks   []pickResult `json:"picks"`

	checkLine string
}

// pickResult is one endpoint's share of the picks.
type pickResult struct {
	Addr     string   `json:"addr"`
	State    string   `json:"state"`
	Healthy  bool     `json:"healthy"`
	RTTAvgMS *float64 `json:"rtt_avg_ms"`
	Picks    int      `json:"picks"`
	Share    float64  `json:"share"`
	Eligible bool     `json:"eligible"`
	Why      string   `json:"why,omitempty"`
}

// pickCmd is "lbprobe pick TARGET -n N".
type pickCmd struct {
	app   *app
	flags probeFlags
	n     intValue
}

func (c *pickCmd) spec() subcommand {
	return subcommand{
		name:  "pick",
		args:  "TARGET",
		short: "probe a target's endpoints, then show how N picks of a policy spread over them",
		long: `Resolves and probes TARGET as endpoints does, then asks the --policy for
-n picks in a row, as a client with no request in flight would make them,
and prints how many each endpoint got. No request is sent. Compare
policies: least_latency keeps away from a slow endpoint, round_robin does
not.`,
		noEnv: []string{"n"},
		flags: func(fs *flag.FlagSet) {
			c.flags.register(fs)
			c.n = defaultPicks
			fs.Var(&c.n, "n", "number of picks")
		},
		exec: c.exec,
	}
}

func (c *pickCmd) exec(ctx context.Context, args []string) (int, error) {
	if c.n < 1 || c.n > maxPicks {
		return 0, usagef("-n %d: want 1 to %d", c.n, maxPicks)
	}
	cfg, err := c.flags.validate(args)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cfg.session.close()
	a := c.app
	rep, picker, err := probeTarget(ctx, cfg.session, time.Duration(c.flags.target.resolveTimeout), cfg.check, cfg.count, cfg.policy)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return a.fail(exitFailure, "interrupted"), nil
		}
		return a.fail(exitFailure, "%v", err), nil
	}
	pr := &pickReport{
		Target: rep.Target, Check: rep.Check, Count: rep.Count, Policy: rep.Policy,
		N: int(c.n), Healthy: rep.Healthy, checkLine: rep.checkLine,
	}
	counts := map[string]int{}
	if picker != nil {
		for range pr.N {
			ch, err := picker.Pick(nil)
			if err != nil {
				pr.Failed++
				pr.Error = stripPkg(err).Error()
				continue
			}
			counts[ch.Addr]++
		}
		picker.Close()
	} else {
		pr.Failed, pr.Error = pr.N, rep.PickError
	}
	for _, e := range rep.Endpoints {
		pr.Picks = append(pr.Picks, pickResult{
			Addr: e.Addr, State: e.State, Healthy: e.Healthy, RTTAvgMS: e.RTTAvgMS,
			Picks: counts[e.Addr], Share: round3(float64(counts[e.Addr]) / float64(pr.N)),
			Eligible: e.Eligible, Why: e.Why,
		})
	}
	if c.flags.json {
		err = writeJSON(a.stdout, pr)
	} else {
		err = writePickTable(a.stdout, pr)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	if pr.Failed == pr.N {
		return exitFailure, nil
	}
	return rep.exitCode(), nil
}

// writePickTable writes the distribution as a table with its footer.
func writePickTable(w io.Writer, r *pickReport) error {
	tw := newTable(w)
	row(tw, "ADDR", "STATE", "HEALTH", "RTT_AVG", "PICKS", "SHARE", "NOTE")
	for _, p := range r.Picks {
		note := ""
		if !p.Eligible {
			note = p.Why
		}
		row(tw, p.Addr, p.State, fmtHealth(p.Healthy), fmtMS(p.RTTAvgMS),
			strconv.Itoa(p.Picks), strconv.FormatFloat(100*p.Share, 'f', 1, 64)+"%", note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Failed > 0 {
		fmt.Fprintf(w, "%d of %d picks failed: %s\n", r.Failed, r.N, r.Error)
	}
	_, err := fmt.Fprintf(w, "%s: %d picks under %s; %d of %d endpoints healthy (%s)\n",
		r.Target, r.N, r.Policy, r.Healthy, len(r.Picks), r.checkLine)
	return err
}
