package mtls

import (
	"context"
	"time"
)

// expiryRecheck bounds how long the expiry watcher sleeps: the Store's
// clock may be set (WithClock) to one that jumps, and a sleep of months
// would outlive a clock change.
const expiryRecheck = time.Minute

// watchExpiry logs, once per certificate, when material in use runs past
// its NotAfter: a Store keeps serving the last good material (an expired
// certificate is refused at load, not taken away later), so without this
// an identity left to expire would fail every handshake with nothing in
// the logs. The smartroute_mtls_cert_expiry_seconds gauge is what alerts
// should watch; this is the log line that explains them.
func (s *Store) watchExpiry(ctx context.Context) {
	defer close(s.expiryDone)
	t := time.NewTimer(expiryRecheck)
	defer t.Stop()
	for {
		changed := s.changed.wait()
		now := s.o.now()
		next := now.Add(expiryRecheck)
		st := s.cur.Load()
		check := func(k certKey, what string, notAfter time.Time) {
			if !now.Before(notAfter) {
				if !s.expiredWarned(k) {
					s.log.Error("mtls: "+what+" expired and is still in use: publish a new one",
						"expired_at", notAfter.UTC().Format(time.RFC3339))
				}
				return
			}
			if notAfter.Before(next) {
				next = notAfter
			}
		}
		for _, name := range st.names {
			id := st.ids[name]
			check(certKey{name: name, serial: id.cert.Leaf.SerialNumber.String()},
				"the certificate of identity "+name, id.cert.Leaf.NotAfter)
		}
		if st.ca != nil {
			for _, c := range st.ca.certs {
				check(certKey{name: "", serial: c.SerialNumber.String()}, "a CA certificate of the bundle", c.NotAfter)
			}
		}
		t.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// certKey names one certificate: its identity ("" for the CA bundle)
// and serial number.
type certKey struct{ name, serial string }

// expiredWarned reports whether k's expiry was logged already, and records
// that it is now.
func (s *Store) expiredWarned(k certKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired[k] {
		return true
	}
	s.expired[k] = true
	return false
}
