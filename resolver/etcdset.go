package resolver

import (
	"cmp"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/smartroute/smartroute/registry"
)

// etcdSet is what the etcd resolver knows of one service: the decoded
// values under its prefix, by key. It turns etcd's key-values (a full list
// or one event at a time) into the endpoint set, through the registry's
// codec. It is not safe for concurrent use.
type etcdSet struct {
	prefix  string              // the registry prefix, for registry.Decode
	entries map[string]Endpoint // decodable values by key
	bad     map[string]badValue // undecodable values by key, as last reported
}

// badValue is a value under the prefix that registry.Decode refused.
type badValue struct {
	Key      string
	Revision int64 // the value's ModRevision
	Err      error
}

func newEtcdSet(prefix string) *etcdSet {
	return &etcdSet{
		prefix:  prefix,
		entries: make(map[string]Endpoint),
		bad:     make(map[string]badValue),
	}
}

// reset replaces the content with a full list of the prefix. A key whose
// value cannot be decoded keeps its last good endpoint, if it had one. It
// returns the undecodable values not reported before: a value is reported
// once per key and revision, however often the prefix is listed.
func (s *etcdSet) reset(kvs []*mvccpb.KeyValue) []badValue {
	old, oldBad := s.entries, s.bad
	s.entries = make(map[string]Endpoint, len(kvs))
	s.bad = make(map[string]badValue)
	var fresh []badValue
	for _, kv := range kvs {
		key := string(kv.Key)
		ep, err := decodeEndpoint(s.prefix, kv)
		if err == nil {
			s.entries[key] = ep
			continue
		}
		if prev, ok := old[key]; ok {
			s.entries[key] = prev
		}
		b := badValue{Key: key, Revision: kv.ModRevision, Err: err}
		if prev, ok := oldBad[key]; !ok || prev.Revision != b.Revision {
			fresh = append(fresh, b)
		}
		s.bad[key] = b
	}
	return fresh
}

// put applies one PUT event. A value that cannot be decoded leaves the
// key's last good endpoint in place; it is returned, with true, unless it
// was reported before.
func (s *etcdSet) put(kv *mvccpb.KeyValue) (badValue, bool) {
	key := string(kv.Key)
	ep, err := decodeEndpoint(s.prefix, kv)
	if err == nil {
		s.entries[key] = ep
		delete(s.bad, key)
		return badValue{}, false
	}
	b := badValue{Key: key, Revision: kv.ModRevision, Err: err}
	prev, seen := s.bad[key]
	s.bad[key] = b
	return b, !seen || prev.Revision != b.Revision
}

// del applies one DELETE event.
func (s *etcdSet) del(key string) {
	delete(s.entries, key)
	delete(s.bad, key)
}

// endpoints returns the set, sorted by address. Two keys with the same
// address (an instance re-registered under a new ID before the old key
// expired) give one endpoint: the one taking traffic over a draining one,
// then the newest write, then the smallest key.
func (s *etcdSet) endpoints() []Endpoint {
	byAddr := make(map[string]Endpoint, len(s.entries))
	for _, ep := range s.entries {
		if cur, ok := byAddr[ep.Addr]; !ok || preferEtcd(ep, cur) {
			byAddr[ep.Addr] = ep
		}
	}
	eps := slices.Collect(maps.Values(byAddr))
	SortEndpoints(eps)
	return eps
}

// preferEtcd reports whether a should stand for an address rather than b.
func preferEtcd(a, b Endpoint) bool {
	if a.Draining != b.Draining {
		return !a.Draining
	}
	if a.Origin.Revision != b.Origin.Revision {
		return a.Origin.Revision > b.Origin.Revision
	}
	return cmp.Less(a.Origin.Name, b.Origin.Name)
}

// decodeEndpoint decodes one key-value with the registry's codec.
func decodeEndpoint(prefix string, kv *mvccpb.KeyValue) (Endpoint, error) {
	key := string(kv.Key)
	inst, err := registry.Decode(prefix, key, kv.Value)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{
		Addr:     inst.Addr,
		Weight:   inst.Weight,
		Zone:     inst.Zone,
		Labels:   inst.Labels,
		Draining: inst.Draining(),
		Origin: Origin{
			Kind:     kindEtcd,
			Name:     key,
			ID:       inst.ID,
			Version:  inst.Version,
			Revision: kv.ModRevision,
			Lease:    kv.Lease,
		},
	}, nil
}
