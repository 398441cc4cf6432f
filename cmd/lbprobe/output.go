package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/resolver"
)

// newTable returns the writer of an aligned table: columns two spaces
// apart, no colour and no tabs in the output, so that it reads the same in
// a terminal, a pipe and a file.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// row writes cells separated by tabs.
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		// A cell must not break the table.
		c = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		if i > 0 {
			io.WriteString(w, "\t")
		}
		io.WriteString(w, c)
	}
	io.WriteString(w, "\n")
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtMS formats a figure in milliseconds: 0.23ms, 51.2ms, 1.20s.
func fmtMS(ms *float64) string {
	if ms == nil {
		return "-"
	}
	v := *ms
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	}
}

func fmtLoss(loss float64) string {
	return strconv.FormatFloat(100*loss, 'f', -1, 64) + "%"
}

func fmtHealth(ok bool) string {
	if ok {
		return "healthy"
	}
	return "unhealthy"
}

// fmtTLS is the TLS column: "ok 89d", a problem word, or "-".
func fmtTLS(t *tlsReport) string {
	switch {
	case t == nil:
		return "-"
	case t.Problem != "":
		return t.Problem
	case t.DaysLeft != nil:
		return fmt.Sprintf("ok %dd", *t.DaysLeft)
	default:
		return "ok"
	}
}

// sourceHeader returns the columns that say where endpoints came from,
// which depend on the target's scheme.
func sourceHeader(scheme string) []string {
	switch scheme {
	case resolver.SchemeEtcd:
		return []string{"KEY", "REV", "LEASE_TTL"}
	case resolver.SchemeDNS:
		return []string{"RECORD", "NAME", "TTL"}
	case resolver.SchemeDNSSRV:
		return []string{"RECORD", "NAME", "TTL", "PRIO"}
	}
	return nil
}

func sourceCells(scheme string, s source) []string {
	switch scheme {
	case resolver.SchemeEtcd:
		lease := "none"
		switch {
		case s.LeaseError != "":
			lease = "?"
		case s.LeaseTTL != nil && *s.LeaseTTL < 0:
			lease = "expired"
		case s.LeaseTTL != nil:
			lease = fmt.Sprintf("%ds/%ds", *s.LeaseTTL, *s.LeaseGranted)
		}
		return []string{s.Key, strconv.FormatInt(s.Revision, 10), lease}
	case resolver.SchemeDNS, resolver.SchemeDNSSRV:
		ttl := "-"
		if s.TTL != nil {
			ttl = (time.Duration(*s.TTL) * time.Second).String()
		}
		cells := []string{s.Record, s.Name, ttl}
		if scheme == resolver.SchemeDNSSRV {
			prio := "-"
			if s.Priority != nil {
				prio = strconv.Itoa(int(*s.Priority))
			}
			cells = append(cells, prio)
		}
		return cells
	}
	return nil
}

// note is the last column: why the endpoint cannot be picked (or a panic
// mode note), the failures of an endpoint still healthy, and a TLS problem
// the check did not already report; "-" when all is well.
func (e endpointReport) note() string {
	var parts []string
	if e.Why != "" {
		parts = append(parts, e.Why)
	}
	if e.Error != "" && e.Healthy {
		parts = append(parts, fmt.Sprintf("%d of %d checks failed: %s", e.Failures, e.Checks, e.Error))
	}
	if e.TLS != nil && e.TLS.Error != "" && e.TLS.Error != e.Error && !strings.Contains(e.Why, e.TLS.Error) {
		parts = append(parts, "tls: "+e.TLS.Error)
	}
	return strings.Join(parts, "; ")
}

// writeEndpointsTable writes the endpoints report as a table with its
// footer; wide adds the instance ID and version (etcd), the checks made
// and failed, and the TLS subject.
func writeEndpointsTable(w io.Writer, r *endpointsReport, wide bool) error {
	tw := newTable(w)
	head := []string{"ADDR", "ZONE", "WEIGHT", "STATE", "LABELS", "HEALTH", "RTT_MIN", "RTT_AVG", "RTT_P99", "LOSS", "TLS", "PICK"}
	head = append(head, sourceHeader(r.scheme)...)
	if wide {
		head = append(head, "ID", "VERSION", "CHECKS", "FAILED", "TLS_SUBJECT")
	}
	head = append(head, "NOTE")
	row(tw, head...)
	for _, e := range r.Endpoints {
		pick := "-"
		if e.Picked {
			pick = "yes"
		}
		cells := []string{e.Addr, e.Zone, strconv.FormatUint(uint64(e.Weight), 10), e.State, fmtLabelList(e.Labels), fmtHealth(e.Healthy),
			fmtMS(e.RTTMinMS), fmtMS(e.RTTAvgMS), fmtMS(e.RTTP99MS), fmtLoss(e.Loss), fmtTLS(e.TLS), pick}
		cells = append(cells, sourceCells(r.scheme, e.Source)...)
		if wide {
			subject := ""
			if e.TLS != nil {
				subject = e.TLS.Subject
			}
			cells = append(cells, e.Source.ID, e.Source.Version, strconv.Itoa(e.Checks), strconv.Itoa(e.Failures), subject)
		}
		cells = append(cells, e.note())
		row(tw, cells...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Pick != "" {
		fmt.Fprintf(w, "pick: %s (%s: %s)\n", r.Pick, r.Policy, r.PickReason)
	} else {
		fmt.Fprintf(w, "pick: none (%s: %s)\n", r.Policy, r.PickError)
	}
	_, err := fmt.Fprintf(w, "%s: %d of %s healthy (%s)\n", r.Target, r.Healthy, cliutil.Plural(len(r.Endpoints), "endpoint", "endpoints"), r.checkLine)
	return err
}

// fmtLabelList is the LABELS cell: k=v pairs sorted by key,
// comma-separated; "-" when none.
func fmtLabelList(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for _, k := range sortedAddrs(l) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}
