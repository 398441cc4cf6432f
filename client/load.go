package client

import (
	"net/http"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"

	"github.com/smartroute/smartroute/loadreport"
)

// Load reports: servers that use package loadreport (or any ORCA
// reporter with the "rif" and "capacity" named metrics) tell the client
// how many requests they have in flight in all, from every client, and
// how many they serve at once before queueing. The client reads them from
// every HTTP response (the endpoint-load-metrics header), every gRPC
// answer (the ORCA trailer, DoneInfo.ServerLoad) and every probe, and the
// cost counts them while they are fresh (WithLoadReportMaxAge).

// loadReport records the load report an HTTP response carries, if any.
// A malformed report is ignored: it never fails the request.
func (c *Client) loadReport(ep *endpoint, h http.Header, now int64) {
	if len(h[loadreport.HeaderName]) == 0 && len(h[loadreport.HeaderNameBin]) == 0 {
		return
	}
	if r, err := loadreport.FromHeader(h, time.Time{}); err == nil {
		c.table.recordLoad(ep, r, now)
	}
}

// orcaReport records a gRPC per-RPC ORCA load report.
func (t *table) orcaReport(ep *endpoint, load any, now int64) {
	p, ok := load.(*v3orcapb.OrcaLoadReport)
	if !ok || p == nil {
		return
	}
	if r, err := loadreport.FromProto(p, time.Time{}); err == nil {
		t.recordLoad(ep, r, now)
	}
}

// recordLoad stores the requests in flight and capacity of r, received at
// now, when it has them.
func (t *table) recordLoad(ep *endpoint, r loadreport.Report, now int64) {
	if !r.HasRIF() {
		return
	}
	var capacity float64
	if r.Has.Has(loadreport.FieldCapacity) {
		capacity = r.Capacity
	}
	ep.mu.Lock()
	ep.hot.report(r.RIF, capacity, now, t.cfg.maxReportAge)
	ep.mu.Unlock()
	if capacity > 0 && r.RIF < capacity {
		t.markVacant(ep, now)
	}
}
