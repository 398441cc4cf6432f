package resolver

import (
	"maps"
	"slices"
)

// notifier turns one Watch call's refreshes into the States it delivers:
// the first set, every real change, every failure (with the last good
// set), and the first success after a failure even when the set did not
// change, so that the receiver learns the error is over.
type notifier struct {
	update    func(State)
	m         *resolverMetrics
	last      []Endpoint // last good set, sorted
	delivered bool       // a State was delivered
	failing   bool       // the last State carried an error
	lastErr   string     // the message of the last error delivered
}

func newNotifier(update func(State), m *resolverMetrics) *notifier {
	return &notifier{update: update, m: m}
}

// good delivers eps, which must be sorted, if it is the first State, a
// change, or the end of a failure. It reports whether it delivered.
func (n *notifier) good(eps []Endpoint) bool {
	same := n.delivered && !n.failing && SameEndpoints(eps, n.last)
	n.last = eps // fresher origins (revisions, TTLs) even when the same set
	if same {
		return false
	}
	n.delivered, n.failing = true, false
	n.m.updates.Inc()
	n.m.endpoints.Set(float64(len(eps)))
	n.update(State{Endpoints: cloneEndpoints(eps)})
	return true
}

// fail delivers err with the last good set (none before the first
// success). It reports whether the failure is news: the first since a
// success, or one with another message than the previous; callers log
// those loudly and the retries of the same failure quietly.
func (n *notifier) fail(err error) (news bool) {
	news = !n.failing || err.Error() != n.lastErr
	n.delivered, n.failing, n.lastErr = true, true, err.Error()
	n.m.errors.Inc()
	n.update(State{Endpoints: cloneEndpoints(n.last), Err: err})
	return news
}

// cloneEndpoints returns a copy of eps that shares no slice or map with
// it: what Watch delivers belongs to the receiver.
func cloneEndpoints(eps []Endpoint) []Endpoint {
	out := slices.Clone(eps)
	for i := range out {
		out[i].Labels = maps.Clone(out[i].Labels)
	}
	return out
}
