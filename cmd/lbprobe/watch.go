package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/probe"
	"github.com/smartroute/smartroute/resolver"
)

// watchCmd is "lbprobe watch TARGET".
type watchCmd struct {
	app        *app
	target     targetFlags
	check      checkFlags
	rise, fall intValue
	format     cliutil.Format
}

func (c *watchCmd) spec() subcommand {
	return subcommand{
		name:  "watch",
		args:  "TARGET",
		short: "follow a target: one line per change of its endpoint set or of an endpoint's health, until interrupted",
		long: `Resolves TARGET and follows it, printing one line per event until
SIGINT or SIGTERM: first "added" for every endpoint of the current set,
then "added", "removed" and "changed" (state, weight, zone or labels) as
the set changes, "health" when the checks change an endpoint's verdict
(after --rise successes or --fall failures in a row, as a client's prober
decides), "error" when resolving fails (the last good set stays) and
"recovered" when it works again. With -o json every line is one JSON
object; -o wide adds the instance ID and version to the text lines. etcd is
checked at start-up: a failure is an "error" event at once, and watch keeps
trying; interrupted before etcd ever answered, it exits 3.`,
		flags: func(fs *flag.FlagSet) {
			c.target.register(fs)
			c.check.register(fs, defaultWatchInterval)
			c.rise, c.fall = probe.DefaultRise, probe.DefaultFall
			fs.Var(&c.rise, "rise", "consecutive successful checks that make an endpoint healthy")
			fs.Var(&c.fall, "fall", "consecutive failed checks that make an endpoint unhealthy")
			cliutil.RegisterFormat(fs, &c.format)
		},
		exec:   c.exec,
		format: &c.format,
	}
}

// watchEvent is one line of watch's output, and its --json object.
type watchEvent struct {
	Time     time.Time         `json:"time"`
	Event    string            `json:"event"`
	Addr     string            `json:"addr,omitempty"`
	State    string            `json:"state,omitempty"`
	Zone     string            `json:"zone,omitempty"`
	Weight   uint32            `json:"weight,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Health   string            `json:"health,omitempty"`
	Previous string            `json:"previous,omitempty"`
	RTTMS    *float64          `json:"rtt_ms,omitempty"`
	Changes  []string          `json:"changes,omitempty"`
	Error    string            `json:"error,omitempty"`
	Source   *source           `json:"source,omitempty"`
}

func (c *watchCmd) exec(ctx context.Context, args []string) (int, error) {
	if len(args) != 1 {
		return 0, usagef("want one TARGET, got %d arguments", len(args))
	}
	if c.rise < 1 || c.fall < 1 || c.rise > 100 || c.fall > 100 {
		return 0, usagef("--rise and --fall: want 1 to 100")
	}
	sess, err := c.target.open(ctx, args[0], true)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer sess.close()
	cs, err := c.check.spec(sess.target)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if cs.interval <= 0 {
		return 0, usagef("--interval must be positive for watch")
	}
	a := c.app
	out := &eventWriter{w: a.stdout, json: c.format.IsJSON(), wide: c.format == cliutil.Wide, health: map[string]probe.Health{}}

	prober := probe.New(cs.checker,
		probe.WithInterval(cs.interval),
		probe.WithTimeout(cs.timeout),
		probe.WithRise(int(c.rise)),
		probe.WithFall(int(c.fall)),
		probe.WithLogger(discard),
	)
	unsubscribe := prober.Subscribe(func(ev probe.Event) {
		if ev.HealthChanged {
			out.healthChanged(ev)
		}
	})
	defer func() {
		unsubscribe()
		prober.Close()
	}()

	known := map[string]resolver.Endpoint{}
	lastErr := ""
	if sess.startErr != nil {
		lastErr = sess.startErr.Error()
		out.write(watchEvent{Event: "error", Error: lastErr})
	}
	answered := false // etcd (or DNS) answered once
	err = sess.res.Watch(ctx, func(st resolver.State) {
		if st.Err == nil {
			answered = true
		}
		if st.Err != nil {
			if msg := stripPkg(st.Err).Error(); msg != lastErr {
				lastErr = msg
				out.write(watchEvent{Event: "error", Error: msg})
			}
		} else if lastErr != "" {
			lastErr = ""
			out.write(watchEvent{Event: "recovered"})
		}
		next := make(map[string]resolver.Endpoint, len(st.Endpoints))
		addrs := make([]string, 0, len(st.Endpoints))
		for _, ep := range st.Endpoints {
			next[ep.Addr] = ep
			addrs = append(addrs, ep.Addr)
		}
		// Stop probing removed addresses before their state is
		// forgotten (a late health event would bring it back), and start
		// probing added ones only after they were announced.
		kept := make([]string, 0, len(addrs))
		for _, addr := range sortedAddrs(known) {
			if _, ok := next[addr]; ok {
				kept = append(kept, addr)
			}
		}
		prober.SetAddrs(kept)
		for _, addr := range sortedAddrs(known) {
			if _, ok := next[addr]; !ok {
				out.write(endpointEvent("removed", known[addr]))
				out.forget(addr)
			}
		}
		for _, ep := range st.Endpoints {
			old, ok := known[ep.Addr]
			switch {
			case !ok:
				out.write(endpointEvent("added", ep))
			case !old.Equal(ep):
				ev := endpointEvent("changed", ep)
				ev.Changes = changes(old, ep)
				out.write(ev)
			}
		}
		known = next
		prober.SetAddrs(addrs)
	})
	if ctx.Err() != nil {
		if !answered && lastErr != "" {
			// Interrupted before the target ever resolved: a script
			// must not read this run as a success.
			return a.fail(exitEtcd, "interrupted; %s never answered: %s", sess.target, lastErr), nil
		}
		return exitOK, nil
	}
	if errors.Is(err, resolver.ErrClientClosed) {
		return a.fail(exitEtcd, "etcd client closed"), nil
	}
	return a.fail(exitEtcd, "watch %s: %v", sess.target, stripPkg(err)), nil
}

// endpointEvent describes ep.
func endpointEvent(kind string, ep resolver.Endpoint) watchEvent {
	src := newSource(ep.Origin, nil)
	ev := watchEvent{Event: kind, Addr: ep.Addr, State: "up", Zone: ep.Zone, Weight: ep.Weight, Labels: ep.Labels, Source: &src}
	if ep.Draining {
		ev.State = "draining"
	}
	if ev.Weight == 0 {
		ev.Weight = 1
	}
	return ev
}

// changes lists what differs between two versions of an endpoint.
func changes(old, cur resolver.Endpoint) []string {
	var out []string
	state := func(d bool) string {
		if d {
			return "draining"
		}
		return "up"
	}
	if old.Draining != cur.Draining {
		out = append(out, fmt.Sprintf("state %s->%s", state(old.Draining), state(cur.Draining)))
	}
	if old.Weight != cur.Weight {
		out = append(out, fmt.Sprintf("weight %d->%d", old.Weight, cur.Weight))
	}
	if old.Zone != cur.Zone {
		out = append(out, fmt.Sprintf("zone %q->%q", old.Zone, cur.Zone))
	}
	if !maps.Equal(old.Labels, cur.Labels) {
		out = append(out, fmt.Sprintf("labels %s->%s", fmtLabels(old.Labels), fmtLabels(cur.Labels)))
	}
	return out
}

func fmtLabels(l map[string]string) string {
	var parts []string
	for _, k := range sortedAddrs(l) {
		parts = append(parts, k+"="+l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// eventWriter writes events one line at a time; the resolver's goroutine
// and the prober's write concurrently.
type eventWriter struct {
	mu     sync.Mutex
	w      io.Writer
	json   bool
	wide   bool
	health map[string]probe.Health // the last verdict per address
}

// healthChanged writes a health event.
func (o *eventWriter) healthChanged(ev probe.Event) {
	o.mu.Lock()
	prev := o.health[ev.Addr]
	o.health[ev.Addr] = ev.Health
	o.mu.Unlock()
	we := watchEvent{Event: "health", Addr: ev.Addr, Health: ev.Health.String(), Previous: prev.String()}
	if ev.Health == probe.Healthy && ev.LastRTT > 0 {
		we.RTTMS = msPtr(ev.LastRTT)
	}
	if ev.LastErr != nil {
		we.Error = stripPkg(ev.LastErr).Error()
	}
	o.write(we)
}

// forget drops what is known of a removed address's health.
func (o *eventWriter) forget(addr string) {
	o.mu.Lock()
	delete(o.health, addr)
	o.mu.Unlock()
}

// write prints one event, stamped now.
func (o *eventWriter) write(ev watchEvent) {
	ev.Time = time.Now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		b, _ := json.Marshal(ev)
		o.w.Write(append(b, '\n'))
		return
	}
	addr := ev.Addr
	if addr == "" {
		addr = "-"
	}
	fmt.Fprintf(o.w, "%s  %-9s  %-21s  %s\n", ev.Time.Format("2006-01-02T15:04:05.000Z07:00"), ev.Event, addr, ev.detail(o.wide))
}

// detail is the text form of an event's fields after the address; wide
// adds the instance ID and version.
func (ev watchEvent) detail(wide bool) string {
	var parts []string
	switch ev.Event {
	case "added", "removed", "changed":
		if len(ev.Changes) > 0 {
			parts = append(parts, strings.Join(ev.Changes, " "))
		}
		parts = append(parts, "state="+ev.State, fmt.Sprintf("weight=%d", ev.Weight))
		if ev.Zone != "" {
			parts = append(parts, "zone="+ev.Zone)
		}
		if len(ev.Labels) > 0 {
			parts = append(parts, "labels="+fmtLabelList(ev.Labels))
		}
		if s := ev.Source; wide && s != nil && s.ID != "" {
			parts = append(parts, "id="+s.ID)
			if s.Version != "" {
				parts = append(parts, "version="+s.Version)
			}
		}
		if s := ev.Source; s != nil {
			switch {
			case s.Key != "":
				parts = append(parts, "key="+s.Key, fmt.Sprintf("rev=%d", s.Revision))
				if s.Lease != "" {
					parts = append(parts, "lease="+s.Lease)
				}
			case s.Record != "":
				parts = append(parts, "record="+s.Record, "name="+s.Name, fmt.Sprintf("ttl=%ds", *s.TTL))
			}
		}
	case "health":
		parts = append(parts, ev.Previous+"->"+ev.Health)
		if ev.RTTMS != nil {
			parts = append(parts, "rtt="+fmtMS(ev.RTTMS))
		}
		if ev.Error != "" {
			parts = append(parts, "error: "+ev.Error)
		}
	case "error":
		parts = append(parts, ev.Error)
	case "recovered":
		parts = append(parts, "resolving works again")
	}
	return strings.Join(parts, " ")
}
