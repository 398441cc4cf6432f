package mtls

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartroute/smartroute/internal/metrics"
)

const subsystem = "mtls"

// storeMetrics are a Store's Prometheus series. The counters and the
// expiry collector are shared by every Store on one registerer.
type storeMetrics struct {
	reloads     *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	peerRefused *prometheus.CounterVec
	connsClosed *prometheus.CounterVec
	expiry      *expiryCollector
}

func newStoreMetrics(r prometheus.Registerer) (*storeMetrics, error) {
	reloads, err := metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: subsystem, Name: "reloads_total",
		Help: "Changes of the CA bundle or of an identity read from etcd, by result: ok (validated and swapped in) or rejected (the last good material stays).",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	rejected, err := metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: subsystem, Name: "rejected_total",
		Help: "Changes read from etcd that failed validation, by reason.",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	peerRefused, err := metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: subsystem, Name: "peer_refused_total",
		Help: "TLS handshakes that refused their peer, by side (server: the peer is a client; client: the peer is a server) and reason: untrusted, revoked, unauthorized, no_certificate.",
	}, []string{"side", "reason"}))
	if err != nil {
		return nil, err
	}
	connsClosed, err := metrics.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: subsystem, Name: "connections_closed_total",
		Help: "Tracked connections (NewListener, DialTLS) closed because their peer was revoked or no longer authorized, or the identity they presented is no longer served.",
	}, []string{"side", "reason"}))
	if err != nil {
		return nil, err
	}
	expiry, err := metrics.Register(r, newExpiryCollector())
	if err != nil {
		return nil, err
	}
	// Export both results and every reason at zero, so that rates and
	// alerts work before the first event.
	reloads.WithLabelValues("ok")
	reloads.WithLabelValues("rejected")
	for _, reason := range allReasons {
		rejected.WithLabelValues(string(reason))
	}
	for _, side := range []string{sideServer, sideClient} {
		for _, reason := range peerReasons {
			peerRefused.WithLabelValues(side, reason)
		}
		for _, reason := range []string{peerRevoked, peerUnauthorized, peerNotServed} {
			connsClosed.WithLabelValues(side, reason)
		}
	}
	return &storeMetrics{reloads: reloads, rejected: rejected, peerRefused: peerRefused, connsClosed: connsClosed, expiry: expiry}, nil
}

// allReasons lists every Reason, for the metric's label values.
var allReasons = []Reason{
	ReasonMalformed, ReasonPlainKey, ReasonUnseal, ReasonKeyMismatch, ReasonExpired,
	ReasonNotYetValid, ReasonUntrusted, ReasonNotCA, ReasonOrphaned, ReasonIncomplete, ReasonDeleted,
	ReasonUnpinned, ReasonRevoked,
}

func (m *storeMetrics) reloaded() { m.reloads.WithLabelValues("ok").Inc() }

func (m *storeMetrics) refused(reason Reason) {
	m.reloads.WithLabelValues("rejected").Inc()
	m.rejected.WithLabelValues(string(reason)).Inc()
}

func (m *storeMetrics) peerRefusal(side, reason string) {
	m.peerRefused.WithLabelValues(side, reason).Inc()
}
func (m *storeMetrics) connClosed(side, reason string) {
	m.connsClosed.WithLabelValues(side, reason).Inc()
}

func (m *storeMetrics) addStore(s *Store)    { m.expiry.add(s) }
func (m *storeMetrics) removeStore(s *Store) { m.expiry.remove(s) }

// expiryCollector reports smartroute_mtls_cert_expiry_seconds{identity}
// and smartroute_mtls_ca_expiry_seconds{serial,subject}, computed at
// scrape time from the certificates the Stores use, so the values count
// down without a timer. Identities are few (a process serves a handful)
// and a bundle holds a few CAs, so the labels are bounded.
type expiryCollector struct {
	desc   *prometheus.Desc
	caDesc *prometheus.Desc

	mu     sync.Mutex
	stores map[*Store]struct{}
}

func newExpiryCollector() *expiryCollector {
	return &expiryCollector{
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(metrics.Namespace, subsystem, "cert_expiry_seconds"),
			"Seconds until the certificate served for an identity expires (negative once expired).",
			[]string{"identity"}, nil),
		caDesc: prometheus.NewDesc(
			prometheus.BuildFQName(metrics.Namespace, subsystem, "ca_expiry_seconds"),
			"Seconds until a CA certificate of the bundle in use expires (negative once expired), by serial (hexadecimal) and subject.",
			[]string{"serial", "subject"}, nil),
		stores: map[*Store]struct{}{},
	}
}

func (c *expiryCollector) add(s *Store) {
	c.mu.Lock()
	c.stores[s] = struct{}{}
	c.mu.Unlock()
}

func (c *expiryCollector) remove(s *Store) {
	c.mu.Lock()
	delete(c.stores, s)
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.caDesc
}

// Collect implements prometheus.Collector. An identity served by several
// Stores is reported once, with its earliest expiry; a CA once per
// serial.
func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	earliest := map[string]time.Time{}
	type caKey struct{ serial, subject string }
	cas := map[caKey]time.Time{}
	var now time.Time
	c.mu.Lock()
	for s := range c.stores {
		now = s.o.now()
		st := s.cur.Load()
		for name, id := range st.ids {
			if t, ok := earliest[name]; !ok || id.cert.Leaf.NotAfter.Before(t) {
				earliest[name] = id.cert.Leaf.NotAfter
			}
		}
		if st.ca != nil {
			for _, ca := range st.ca.certs {
				cas[caKey{serialHex(ca), ca.Subject.String()}] = ca.NotAfter
			}
		}
	}
	c.mu.Unlock()
	for name, t := range earliest {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, t.Sub(now).Seconds(), name)
	}
	for k, t := range cas {
		ch <- prometheus.MustNewConstMetric(c.caDesc, prometheus.GaugeValue, t.Sub(now).Seconds(), k.serial, k.subject)
	}
}
