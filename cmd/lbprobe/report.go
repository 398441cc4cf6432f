package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/resolver"
)

// endpointsReport is the output of the endpoints command, and the --json
// document (field names documented in doc.go).
type endpointsReport struct {
	Target     string           `json:"target"`
	Check      string           `json:"check"`
	Count      int              `json:"count"`
	Policy     string           `json:"policy"`
	Pick       string           `json:"pick"`
	PickReason string           `json:"pick_reason,omitempty"`
	PickError  string           `json:"pick_error,omitempty"`
	Healthy    int              `json:"healthy"`
	Endpoints  []endpointReport `json:"endpoints"`
	// scheme picks the table's source columns.
	scheme string
	// checkLine is the footer's description of the check.
	checkLine string
}

// endpointReport is one endpoint.
type endpointReport struct {
	Addr     string            `json:"addr"`
	Zone     string            `json:"zone"`
	Weight   uint32            `json:"weight"`
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	Healthy  bool              `json:"healthy"`
	Checks   int               `json:"checks"`
	Failures int               `json:"failures"`
	Loss     float64           `json:"loss"`
	RTTMinMS *float64          `json:"rtt_min_ms"`
	RTTAvgMS *float64          `json:"rtt_avg_ms"`
	RTTP99MS *float64          `json:"rtt_p99_ms"`
	Error    string            `json:"error,omitempty"`
	TLS      *tlsReport        `json:"tls,omitempty"`
	Eligible bool              `json:"eligible"`
	Why      string            `json:"why,omitempty"`
	Breaker  string            `json:"breaker,omitempty"`
	Picked   bool              `json:"picked"`
	Source   source            `json:"source"`
}

// tlsReport is the TLS column.
type tlsReport struct {
	Verified bool       `json:"verified"`
	Version  string     `json:"version,omitempty"`
	Subject  string     `json:"subject,omitempty"`
	NotAfter *time.Time `json:"not_after,omitempty"`
	DaysLeft *int       `json:"days_left,omitempty"`
	// Problem is the short reason of a failed handshake: untrusted,
	// expired, not_yet_valid, name_mismatch, failed.
	Problem string `json:"problem,omitempty"`
	Error   string `json:"error,omitempty"`
}

// source is where an endpoint came from.
type source struct {
	Kind string `json:"kind"`
	// etcd
	Key          string `json:"key,omitempty"`
	ID           string `json:"id,omitempty"`
	Version      string `json:"version,omitempty"`
	Revision     int64  `json:"revision,omitempty"`
	Lease        string `json:"lease,omitempty"`
	LeaseTTL     *int64 `json:"lease_ttl_s,omitempty"`
	LeaseGranted *int64 `json:"lease_granted_ttl_s,omitempty"`
	LeaseError   string `json:"lease_error,omitempty"`
	// DNS
	Name     string  `json:"name,omitempty"`
	Record   string  `json:"record,omitempty"`
	TTL      *int64  `json:"ttl_s,omitempty"`
	Priority *uint16 `json:"priority,omitempty"`
}

// probeTarget resolves, measures and asks the policy, for endpoints and
// pick. It returns the report and the picker (nil when it could not be
// built; the report then says why), which the caller closes. The error
// says why the target could not be resolved.
func probeTarget(ctx context.Context, ts *targetSession, resolveTimeout time.Duration, cs checkSpec, count int, policy client.Policy) (*endpointsReport, *client.Client, error) {
	st, err := ts.firstState(ctx, resolveTimeout)
	if err != nil {
		return nil, nil, err
	}
	eps := st.Endpoints
	leases := ts.leases(ctx, eps)
	addrs := make([]string, len(eps))
	for i, ep := range eps {
		addrs[i] = ep.Addr
	}
	ms := measure(ctx, addrs, cs, count)
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	rep := &endpointsReport{
		Target:    ts.target.String(),
		Check:     cs.kind,
		Count:     count,
		Policy:    string(policy),
		scheme:    ts.target.Scheme,
		checkLine: cs.describe(count),
	}
	for _, ep := range eps {
		rep.Endpoints = append(rep.Endpoints, newEndpointReport(ep, ms[ep.Addr], leases))
		if ms[ep.Addr].healthy() {
			rep.Healthy++
		}
	}
	c, err := newPicker(ctx, ts.service(), eps, ms, policy, breakerOptions(cs.maxRT, count)...)
	if err != nil {
		rep.PickError = err.Error()
		return rep, nil, nil
	}
	infos := map[string]client.EndpointInfo{}
	for _, info := range c.Endpoints() {
		infos[info.Addr] = info
	}
	for i := range rep.Endpoints {
		e := &rep.Endpoints[i]
		info := infos[e.Addr]
		e.Eligible, e.Why = info.Eligible, info.Why
		if len(info.Breakers) > 0 {
			e.Breaker = info.Breaker.String()
		}
	}
	return rep, c, nil
}

// applyPick marks the endpoint ch chose.
func (r *endpointsReport) applyPick(ch client.Choice, err error) {
	if err != nil {
		r.PickError = stripPkg(err).Error()
		return
	}
	r.Pick, r.PickReason = ch.Addr, ch.Reason
	for i := range r.Endpoints {
		r.Endpoints[i].Picked = r.Endpoints[i].Addr == ch.Addr
	}
}

// exitCode is 0 when every endpoint is healthy, 1 when some are, 4 when
// none is.
func (r *endpointsReport) exitCode() int {
	switch {
	case r.Healthy == len(r.Endpoints) && r.Healthy > 0:
		return exitOK
	case r.Healthy > 0:
		return exitSome
	default:
		return exitNone
	}
}

func newEndpointReport(ep resolver.Endpoint, m *measurement, leases map[int64]leaseInfo) endpointReport {
	e := endpointReport{
		Addr:     ep.Addr,
		Zone:     ep.Zone,
		Weight:   ep.Weight,
		Labels:   ep.Labels,
		State:    "up",
		Healthy:  m.healthy(),
		Checks:   m.checks,
		Failures: m.failures,
		Loss:     round3(m.loss()),
		Source:   newSource(ep.Origin, leases),
	}
	if e.Weight == 0 {
		e.Weight = 1
	}
	if e.Labels == nil {
		e.Labels = map[string]string{}
	}
	if ep.Draining {
		e.State = "draining"
	}
	if lo, avg, p99, ok := m.stats(); ok {
		e.RTTMinMS, e.RTTAvgMS, e.RTTP99MS = msPtr(lo), msPtr(avg), msPtr(p99)
	}
	if m.lastErr != nil {
		e.Error = stripPkg(m.lastErr).Error()
	}
	if m.tls != nil {
		e.TLS = newTLSReport(m.tls, time.Now())
	}
	return e
}

func newSource(o resolver.Origin, leases map[int64]leaseInfo) source {
	s := source{Kind: o.Kind}
	switch o.Kind {
	case "etcd":
		s.Key, s.ID, s.Version, s.Revision = o.Name, o.ID, o.Version, o.Revision
		if o.Lease != 0 {
			s.Lease = fmt.Sprintf("%x", o.Lease)
			if li, ok := leases[o.Lease]; ok {
				if li.err != nil {
					s.LeaseError = stripPkg(li.err).Error()
				} else {
					ttl, granted := li.ttl, li.granted
					s.LeaseTTL, s.LeaseGranted = &ttl, &granted
				}
			}
		}
	case "dns-a", "dns-aaaa", "dns-srv":
		s.Name = o.Name
		s.Record = strings.ToUpper(strings.TrimPrefix(o.Kind, "dns-"))
		ttl := int64(o.TTL / time.Second)
		s.TTL = &ttl
		if o.Kind == "dns-srv" {
			p := o.Priority
			s.Priority = &p
		}
	}
	return s
}

func newTLSReport(o *tlsOutcome, now time.Time) *tlsReport {
	if o.err != nil {
		return &tlsReport{Problem: tlsProblem(o.err), Error: stripPkg(o.err).Error()}
	}
	r := &tlsReport{Verified: o.res.Verified, Version: tls.VersionName(o.res.Version)}
	if len(o.res.PeerCertificates) > 0 {
		r.Subject = o.res.PeerCertificates[0].Subject.String()
	}
	if !o.res.NotAfter.IsZero() {
		na := o.res.NotAfter.UTC()
		days := int(math.Floor(o.res.NotAfter.Sub(now).Hours() / 24))
		r.NotAfter, r.DaysLeft = &na, &days
	}
	return r
}

// tlsProblem names why a handshake failed, in a word.
func tlsProblem(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "untrusted"
	case errors.As(err, &host):
		return "name_mismatch"
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			if strings.Contains(invalid.Detail, "not yet valid") || strings.Contains(err.Error(), "not yet valid") {
				return "not_yet_valid"
			}
			return "expired"
		default:
			return "invalid"
		}
	}
	return "failed"
}

func msPtr(d time.Duration) *float64 {
	v := round3(float64(d) / float64(time.Millisecond))
	return &v
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// sortedAddrs returns the keys of m in order (addresses, identity
// names, label keys).
func sortedAddrs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
