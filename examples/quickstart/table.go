package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/smartroute/smartroute/client"
)

// meter turns the load's running counts into the figures of the last
// interval, and keeps the delay comparison of the whole run.
type meter struct {
	last     map[string]uint64
	lastTook map[string]time.Duration
	lastFail uint64
	lastAt   time.Time

	// Over the whole run: the injected delay of every answer's backend,
	// summed, and what the same answers would have waited with the load
	// spread evenly over the backends in rotation (round robin).
	answers         uint64
	delaySum, rrSum time.Duration
}

// interval is the traffic of one refresh: answers and their latency by
// backend, failures, and the rate.
type interval struct {
	by     map[string]uint64
	took   map[string]time.Duration
	total  uint64
	failed uint64
	rate   float64 // requests per second
	mean   time.Duration
}

func (m *meter) next(l *load, now time.Time) interval {
	cur, took := l.counts(), l.latencies()
	failed, _ := l.failures()
	iv := interval{by: make(map[string]uint64, len(cur)), took: make(map[string]time.Duration, len(cur)), failed: failed - m.lastFail}
	var sum time.Duration
	for k, v := range cur {
		iv.by[k] = v - m.last[k]
		iv.took[k] = took[k] - m.lastTook[k]
		iv.total += iv.by[k]
		sum += iv.took[k]
	}
	if iv.total > 0 {
		iv.mean = sum / time.Duration(iv.total)
	}
	if secs := now.Sub(m.lastAt).Seconds(); !m.lastAt.IsZero() && secs > 0 {
		iv.rate = float64(iv.total+iv.failed) / secs
	}
	m.last, m.lastTook, m.lastFail, m.lastAt = cur, took, failed, now
	return iv
}

// account adds an interval to the run's delay comparison.
func (m *meter) account(iv interval, backends []*backend) {
	var inRotation []time.Duration
	for _, b := range backends {
		m.delaySum += time.Duration(iv.by[b.name]) * b.latency
		if b.State() == "up" {
			inRotation = append(inRotation, b.latency)
		}
	}
	if len(inRotation) == 0 {
		return
	}
	var even time.Duration
	for _, d := range inRotation {
		even += d
	}
	m.rrSum += time.Duration(iv.total) * even / time.Duration(len(inRotation))
	m.answers += iv.total
}

// comparison says how long the answers waited in the backends, on average,
// against what round robin would have made them wait.
func (m *meter) comparison() string {
	if m.answers == 0 {
		return ""
	}
	n := time.Duration(m.answers)
	return fmt.Sprintf("mean backend delay per answer: %s with smartroute, %s if spread evenly (round robin)",
		fmtDuration(m.delaySum/n), fmtDuration(m.rrSum/n))
}

// renderTable lays out one refresh of the endpoint table:
//
//	 12.0s   398 req/s   mean latency 7.9ms   ok 4512   failed 0
//	BACKEND  ADDRESS            DELAY  SHARE (last 1s)       LATENCY  RTT      HEALTH     STATE
//	b2       127.0.0.1:40021    6.0ms  ########         61%  7.5ms    6.8ms    healthy    up
//
// DELAY is the latency injected into the backend; SHARE is its share of the
// answers of the last second and LATENCY their mean latency as the client's
// caller saw it (TLS, HTTP and scheduling included); RTT is the client's
// peak-EWMA latency estimate, what least_latency ranks endpoints by; HEALTH
// is the active probe's verdict; STATE is what the client's table says: up,
// draining, out of rotation and why, or removed once the instance's key is
// gone from etcd.
func renderTable(elapsed time.Duration, iv interval, ok, failed uint64, backends []*backend, eps []client.EndpointInfo, bar string) []string {
	byAddr := make(map[string]client.EndpointInfo, len(eps))
	for _, e := range eps {
		byAddr[e.Addr] = e
	}
	lines := []string{
		fmt.Sprintf("  %5.1fs  %4.0f req/s   mean latency %s   ok %d   failed %d",
			elapsed.Seconds(), iv.rate, fmtDuration(iv.mean), ok, failed),
		fmt.Sprintf("  %-7s  %-5s  %-16s  %-7s  %-7s  %-9s  %-24s  %s",
			"BACKEND", "DELAY", "SHARE (last 1s)", "LATENCY", "RTT", "HEALTH", "STATE", "ADDRESS"),
	}
	for _, b := range backends {
		share, lat := 0.0, "-"
		if n := iv.by[b.name]; n > 0 {
			share = float64(n) / float64(iv.total)
			lat = fmtDuration(iv.took[b.name] / time.Duration(n))
		}
		rtt, health, state := "-", "-", endpointState(b, byAddr)
		if e, ok := byAddr[b.Addr()]; ok {
			rtt = fmtDuration(e.RTT)
			health = e.Health.String()
		}
		lines = append(lines, fmt.Sprintf("  %-7s  %-5s  %-10s %4.0f%%  %-7s  %-7s  %-9s  %-24s  %s",
			b.name, fmtDuration(b.latency), shareBar(share, bar), share*100, lat, rtt, health, state, b.Addr()))
	}
	return lines
}

// endpointState says what the client makes of a backend.
func endpointState(b *backend, byAddr map[string]client.EndpointInfo) string {
	e, ok := byAddr[b.Addr()]
	switch {
	case !ok && b.State() == "killed":
		return "removed (lease expired)"
	case !ok && b.State() == "gone":
		return "removed (deregistered)"
	case !ok:
		return "not discovered yet"
	case e.Draining:
		return "draining"
	case e.Ejected:
		return "out: ejected"
	case !e.Eligible:
		return "out: " + shortWhy(e)
	case b.State() == "killed":
		return "up (killed; lease alive)"
	default:
		return "up"
	}
}

// shortWhy keeps the first words of why an endpoint is out of rotation
// ("unhealthy: probe: ... connection refused" becomes "unhealthy").
func shortWhy(e client.EndpointInfo) string {
	why, _, _ := strings.Cut(e.Why, ":")
	if why == "" {
		return e.Health.String()
	}
	return why
}

// shareBar draws share as a bar of 10 cells.
func shareBar(share float64, cell string) string {
	const width = 10
	n := int(share*width + 0.5)
	return strings.Repeat(cell, n) + strings.Repeat(" ", width-n)
}

// fmtDuration prints a latency with a precision fit for a table: 6.0ms,
// 12ms, 850µs.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}
