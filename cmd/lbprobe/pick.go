package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/smartroute/smartroute/internal/cliutil"
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
	Addr     string            `json:"addr"`
	Zone     string            `json:"zone"`
	Weight   uint32            `json:"weight"`
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	Healthy  bool              `json:"healthy"`
	RTTAvgMS *float64          `json:"rtt_avg_ms"`
	RTTMinMS *float64          `json:"rtt_min_ms"`
	RTTP99MS *float64          `json:"rtt_p99_ms"`
	Loss     float64           `json:"loss"`
	Picks    int               `json:"picks"`
	Share    float64           `json:"share"`
	Eligible bool              `json:"eligible"`
	Why      string            `json:"why,omitempty"`
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
		exec:   c.exec,
		format: &c.flags.format,
	}
}

func (c *pickCmd) exec(ctx context.Context, args []string) (int, error) {
	if c.n < 1 || c.n > maxPicks {
		return 0, usagef("-n %d: want 1 to %d", c.n, maxPicks)
	}
	cfg, err := c.flags.validate(ctx, args)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cfg.session.close()
	a := c.app
	rep, picker, err := probeTarget(ctx, cfg.session, time.Duration(c.flags.target.resolveTimeout), cfg.check, cfg.count, cfg.policy)
	if err != nil {
		return resolveFailure(a, err), nil
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
			Addr: e.Addr, Zone: e.Zone, Weight: e.Weight, Labels: e.Labels, State: e.State, Healthy: e.Healthy, RTTAvgMS: e.RTTAvgMS,
			RTTMinMS: e.RTTMinMS, RTTP99MS: e.RTTP99MS, Loss: e.Loss,
			Picks: counts[e.Addr], Share: round3(float64(counts[e.Addr]) / float64(pr.N)),
			Eligible: e.Eligible, Why: e.Why,
		})
	}
	if c.flags.format.IsJSON() {
		err = writeJSON(a.stdout, pr)
	} else {
		err = writePickTable(a.stdout, pr, c.flags.format == cliutil.Wide)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	if pr.Failed == pr.N {
		return exitNone, nil
	}
	return rep.exitCode(), nil
}

// writePickTable writes the distribution as a table with its footer;
// wide adds the RTT minimum and 99th percentile and the loss.
func writePickTable(w io.Writer, r *pickReport, wide bool) error {
	tw := newTable(w)
	head := []string{"ADDR", "ZONE", "WEIGHT", "STATE", "LABELS", "HEALTH", "RTT_AVG"}
	if wide {
		head = append(head, "RTT_MIN", "RTT_P99", "LOSS")
	}
	row(tw, append(head, "PICKS", "SHARE", "NOTE")...)
	for _, p := range r.Picks {
		note := ""
		if !p.Eligible {
			note = p.Why
		}
		cells := []string{p.Addr, p.Zone, strconv.FormatUint(uint64(p.Weight), 10), p.State, fmtLabelList(p.Labels),
			fmtHealth(p.Healthy), fmtMS(p.RTTAvgMS)}
		if wide {
			cells = append(cells, fmtMS(p.RTTMinMS), fmtMS(p.RTTP99MS), fmtLoss(p.Loss))
		}
		row(tw, append(cells, strconv.Itoa(p.Picks), strconv.FormatFloat(100*p.Share, 'f', 1, 64)+"%", note)...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Failed > 0 {
		fmt.Fprintf(w, "%d of %s failed: %s\n", r.Failed, cliutil.Plural(r.N, "pick", "picks"), r.Error)
	}
	_, err := fmt.Fprintf(w, "%s: %s under %s; %d of %s healthy (%s)\n",
		r.Target, cliutil.Plural(r.N, "pick", "picks"), r.Policy, r.Healthy, cliutil.Plural(len(r.Picks), "endpoint", "endpoints"), r.checkLine)
	return err
}
