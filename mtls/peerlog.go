package mtls

import (
	"crypto/x509"
	"sync"
	"time"
)

// Bounds of the log of refused peers: a client retrying a refused
// handshake in a loop must not flood the logs, so one line is written per
// peer certificate and reason every peerLogInterval, for at most
// peerLogEntries distinct ones at a time (then the memory is reset).
const (
	peerLogInterval = 10 * time.Second
	peerLogEntries  = 1024
)

// peerLog remembers when a refusal was last logged.
type peerLog struct {
	mu   sync.Mutex
	last map[peerLogKey]time.Time
}

type peerLogKey struct{ side, reason, serial string }

// due reports whether a refusal should be logged now, and records that it
// is.
func (l *peerLog) due(k peerLogKey, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) >= peerLogEntries {
		l.last = make(map[peerLogKey]time.Time)
	}
	if t, ok := l.last[k]; ok && now.Sub(t) < peerLogInterval {
		return false
	}
	l.last[k] = now
	return true
}

// refusedPeer counts and logs a handshake's refusal of its peer. The log
// names the reason, the peer's subject, serial and SANs, never more.
func (s *Store) refusedPeer(side, local string, certs []*x509.Certificate, perr *peerError) {
	s.m.peerRefusal(side, perr.reason)
	serial := ""
	if len(certs) > 0 {
		serial = serialHex(certs[0])
	}
	if !s.peerLog.due(peerLogKey{side, perr.reason, serial}, time.Now()) {
		return
	}
	attrs := []any{"side", side, "reason", perr.reason}
	if side == sideServer {
		attrs = append(attrs, "identity", local)
	} else {
		attrs = append(attrs, "server_name", local)
	}
	if len(certs) > 0 {
		attrs = append(attrs, "peer", certs[0].Subject.String(), "serial", serial, "sans", DescribeCertificate(certs[0]).SANs())
	}
	attrs = append(attrs, "err", perr.err)
	s.log.Warn("mtls: handshake refused its peer", attrs...)
}
