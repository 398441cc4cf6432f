package client

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ringEntry is one point of the consistent-hash ring.
type ringEntry struct {
	hash uint64
	idx  int32 // index into the pool's endpoints
}

// maxRingSize bounds the ring, as Envoy's ring_hash maximum_ring_size
// (scaled down: a client-side ring is rebuilt on every table change).
const maxRingSize = 1 << 20

// buildRing places each endpoint on the ring replicas×weight times at the
// xxhash of "addr#i". An endpoint's points depend only on its address and
// weight, never on the others, so an endpoint joining or leaving moves only
// the keys of its own arcs: about 1/N of them. Only a table too large for
// maxRingSize is scaled down as a whole.
func buildRing(eps []*endpoint, replicas int) []ringEntry {
	if len(eps) == 0 {
		return nil
	}
	var total float64
	for _, ep := range eps {
		total += float64(replicas) * float64(ep.weight())
	}
	scale := min(1, maxRingSize/total)
	ring := make([]ringEntry, 0, int(total*scale)+len(eps))
	var buf []byte
	for i, ep := range eps {
		n := max(1, int(float64(replicas)*float64(ep.weight())*scale+0.5))
		for k := 0; k < n; k++ {
			buf = append(buf[:0], ep.addr...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(k), 10)
			ring = append(ring, ringEntry{hash: xxhash.Sum64(buf), idx: int32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.idx - b.idx)
	})
	return ring
}

// pickConsistentHash returns the owner of the first ring point at or after
// the request's hash that r has not tried; without a key, a random one.
func pickConsistentHash(p *pool, r *pickRequest) *endpoint {
	if len(p.ring) == 0 {
		return nil
	}
	h := r.hash
	if !r.hasHash {
		h = randUint64()
	}
	n := len(p.ring)
	i, _ := slices.BinarySearchFunc(p.ring, h, func(e ringEntry, h uint64) int {
		switch {
		case e.hash < h:
			return -1
		case e.hash > h:
			return 1
		}
		return 0
	})
	for k := 0; k < n; k++ {
		ep := p.eps[p.ring[(i+k)%n].idx]
		if !r.excluded(ep) {
			return ep
		}
	}
	return nil
}

// hashKey hashes a request key for the ring.
func hashKey(key string) uint64 { return xxhash.Sum64String(key) }

// HashByHeader takes the consistent-hash key from a request header.
func HashByHeader(name string) func(*http.Request) string {
	return func(r *http.Request) string { return r.Header.Get(name) }
}

// HashByClientIP takes the consistent-hash key from the IP of the client
// the request is made for: the first address of X-Forwarded-For when
// present (a proxy forwarding its client's request), else the host of
// Request.RemoteAddr (a server passing on a request it received).
func HashByClientIP(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		return strings.TrimSpace(first)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
