package resolver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

// Kinds of resolver, the "kind" label of the metrics.
const (
	kindEtcd   = SchemeEtcd
	kindDNS    = SchemeDNS
	kindSRV    = SchemeDNSSRV
	kindStatic = SchemeStatic
)

// Reasons for an etcd re-list, the "reason" label of
// smartroute_resolver_relists_total.
const (
	relistCompacted   = "compacted"   // the watch fell behind a compaction
	relistWatchClosed = "watch_ended" // etcd or the client ended the watch
	relistUnreachable = "unreachable" // etcd did not answer; the watch was dropped
)

// resolverMetrics are one resolver's series. They are labelled by kind and
// target ("etcd:///api"): a process resolves a handful of targets, so the
// cardinality stays small. Nothing is labelled per endpoint.
type resolverMetrics struct {
	updates        prometheus.Counter
	errors         prometheus.Counter
	decodeFailures prometheus.Counter
	endpoints      prometheus.Gauge
	relists        *prometheus.CounterVec // by reason; etcd only
	kind, target   string
}

func newResolverMetrics(r prometheus.Registerer, kind, target string) (*resolverMetrics, error) {
	labels := []string{"kind", "target"}
	counter := func(name, help string, extra ...string) (*prometheus.CounterVec, error) {
		return metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "resolver", Name: name, Help: help,
		}, append(labels, extra...)))
	}
	updates, err := counter("updates_total", "Endpoint sets delivered after a change (or after recovering from an error).")
	if err != nil {
		return nil, err
	}
	errs, err := counter("errors_total", "Failed refreshes reported with the last good set: etcd unreachable, DNS failures and bad answers.")
	if err != nil {
		return nil, err
	}
	decode, err := counter("decode_failures_total", "Values skipped because they could not be decoded: etcd values (counted once per key and revision) and DNS answers.")
	if err != nil {
		return nil, err
	}
	relists, err := counter("relists_total", "etcd re-lists after the first, by reason: compacted, watch_ended, unreachable.", "reason")
	if err != nil {
		return nil, err
	}
	gauge, err := metrics.Register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Subsystem: "resolver", Name: "endpoints",
		Help: "Endpoints in the set last delivered.",
	}, labels))
	if err != nil {
		return nil, err
	}
	return &resolverMetrics{
		updates:        updates.WithLabelValues(kind, target),
		errors:         errs.WithLabelValues(kind, target),
		decodeFailures: decode.WithLabelValues(kind, target),
		endpoints:      gauge.WithLabelValues(kind, target),
		relists:        relists,
		kind:           kind,
		target:         target,
	}, nil
}

func (m *resolverMetrics) relist(reason string) {
	m.relists.WithLabelValues(m.kind, m.target, reason).Inc()
}
