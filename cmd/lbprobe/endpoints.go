package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/overload"
)

// probeFlags are the flags of the commands that resolve, probe and pick
// (endpoints and pick).
type probeFlags struct {
	target targetFlags
	check  checkFlags
	count  intValue
	policy string
	maxRT  durationValue
	format cliutil.Format
}

func (p *probeFlags) register(fs *flag.FlagSet) {
	p.target.register(fs)
	p.check.register(fs, defaultProbeInterval)
	p.count = defaultCount
	fs.Var(&p.count, "count", "checks per endpoint")
	fs.StringVar(&p.policy, "policy", string(client.DefaultPolicy), "picking policy: "+policyNames())
	fs.Var(&p.maxRT, "max-rt", "judge each endpoint's checks by a client's slow-call endpoint breaker with this max RT (0: off)")
	cliutil.RegisterFormat(fs, &p.format)
}

// policyNames lists the policies for the usage text.
func policyNames() string {
	var s string
	for i, p := range client.Policies() {
		if i > 0 {
			s += "|"
		}
		s += string(p)
	}
	return s
}

// probeConfig is the validated configuration of endpoints and pick.
type probeConfig struct {
	session *targetSession
	check   checkSpec
	count   int
	policy  client.Policy
}

// validate checks the flags and the one TARGET argument, and opens the
// target. Its errors are usage errors.
func (p *probeFlags) validate(ctx context.Context, args []string) (*probeConfig, error) {
	if len(args) == 0 {
		return nil, usagef("missing TARGET (e.g. etcd:///api, dns:///api.example.com:443)")
	}
	if len(args) > 1 {
		return nil, usagef("one TARGET only, got %d arguments: %q", len(args), args)
	}
	if p.count < 1 || p.count > maxCount {
		return nil, usagef("--count %d: want 1 to %d", p.count, maxCount)
	}
	policy, err := client.ParsePolicy(p.policy)
	if err != nil {
		return nil, usagef("--policy: %v", stripPkg(err))
	}
	sess, err := p.target.open(ctx, args[0], false)
	if err != nil {
		return nil, err
	}
	cs, err := p.check.spec(sess.target)
	if err != nil {
		sess.close()
		return nil, err
	}
	if p.maxRT < 0 {
		sess.close()
		return nil, usagef("--max-rt %v: want a positive duration, or 0 for none", time.Duration(p.maxRT))
	}
	cs.maxRT = time.Duration(p.maxRT)
	return &probeConfig{session: sess, check: cs, count: int(p.count), policy: policy}, nil
}

// endpointsCmd is "lbprobe endpoints TARGET".
type endpointsCmd struct {
	app   *app
	flags probeFlags
}

func (c *endpointsCmd) spec() subcommand {
	return subcommand{
		name:  "endpoints",
		args:  "TARGET",
		short: "resolve a target, probe every endpoint and show which one a client would pick, and why",
		long: `Resolves TARGET, runs --count checks against every endpoint (--interval
apart, endpoints in parallel), and prints one row per endpoint: address,
zone, weight, state (up or draining), health (healthy when more than half
of the checks succeeded), RTT minimum, mean and 99th percentile of the
successful checks, loss (the share of failed checks), TLS (verified and
days to expiry, or why not), whether the --policy would pick it, where it
came from (etcd: key, revision, lease TTL left; DNS: record type, name,
TTL), its labels and a note saying why it cannot be picked or what failed.
-o wide adds the instance ID and version, the checks made and failed, and
the TLS subject.

The pick is asked of a smartroute client (package client) whose table
holds the figures measured here; no request is sent.`,
		flags:  c.flags.register,
		exec:   c.exec,
		format: &c.flags.format,
	}
}

func (c *endpointsCmd) exec(ctx context.Context, args []string) (int, error) {
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
	if picker != nil {
		rep.applyPick(picker.Pick(nil))
		picker.Close()
	}
	if c.flags.format.IsJSON() {
		err = writeJSON(a.stdout, rep)
	} else {
		err = writeEndpointsTable(a.stdout, rep, c.flags.format == cliutil.Wide)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	return rep.exitCode(), nil
}

// resolveFailure reports a target that could not be resolved and probed:
// interrupted (exitFailure), or not resolved (exitEtcd, with etcd's cause
// named when it is etcd's).
func resolveFailure(a *app, err error) int {
	if errors.Is(err, context.Canceled) {
		return a.fail(exitFailure, "interrupted")
	}
	return a.failErr(exitEtcd, err)
}

// breakerOptions are the options of a picker judging endpoints by a
// client's slow-call endpoint breaker with maxRT (none for 0): over the
// count checks of each endpoint, it opens when half of them were slower
// than maxRT (failed checks count as calls that were not slow).
func breakerOptions(maxRT time.Duration, count int) []client.Option {
	if maxRT <= 0 {
		return nil
	}
	return []client.Option{client.WithOverload(overload.WithoutThrottling(),
		overload.WithEndpointBreakers(overload.BreakerRule{Strategy: overload.SlowCallRatio, MaxRT: maxRT, MinRequests: count}))}
}

// errCheckFailed is what a failed check tells an endpoint breaker.
var errCheckFailed = errors.New("check failed")

// judgeBreakers feeds every endpoint's checks to the picker's endpoint
// breakers, as the requests of a client, and waits until the picker's
// table has taken the endpoints whose breaker opened out of rotation.
func judgeBreakers(ctx context.Context, c *client.Client, ms map[string]*measurement) error {
	g := c.Guard()
	if g == nil {
		return nil
	}
	for addr, m := range ms {
		e := g.Endpoint(addr)
		outcomes := make([]overload.Outcome, 0, m.checks)
		for _, rtt := range m.rtts {
			outcomes = append(outcomes, overload.Outcome{Latency: rtt})
		}
		for range m.checks - len(m.rtts) {
			outcomes = append(outcomes, overload.Outcome{Latency: time.Nanosecond, Err: errCheckFailed})
		}
		for _, o := range outcomes {
			tk, err := e.Acquire(ctx)
			if err != nil {
				break // opened already
			}
			tk.Done(o)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, pickerSettleTimeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		settled := true
		for _, e := range c.Endpoints() {
			if e.Breaker == overload.Open && e.Eligible && !strings.Contains(e.Why, "panic mode") {
				settled = false
			}
		}
		if settled {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("client table: breakers not settled: %w", ctx.Err())
		}
	}
}
