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
	idx  int32 // the owner's index in the endpoints the ring was built over
}

// maxRingSize bounds the ring, as Envoy's ring_hash maximum_ring_size
// (scaled down: a client-side ring is rebuilt on every membership change).
const maxRingSize = 1 << 20

// ownRingFactor is how much smaller than the table a pool must be to get a
// ring of its own: walking the table's ring past other endpoints' points
// costs about len(table)/len(pool) steps per pick.
const ownRingFactor = 8

// buildRing places each endpoint on the ring replicas×weight times at the
// xxhash of "addr#i". An endpoint's points depend only on its address and
// weight, never on the others, so an endpoint joining or leaving moves only
// the keys of its own arcs: about 1/N of them. Only a table too large for
// maxRingSize is scaled down as a whole.
//
// The ring depends on membership and weights only. Health, ejection and
// zone changes narrow the pools, and a pick walks past the points of
// endpoints outside its pool, so such changes cost no rebuild.
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
	sortRing(ring)
	return ring
}

// sortRing sorts by hash, then owner, with an LSD radix sort on the hash:
// a ring of a million points sorts in milliseconds, where a comparison
// sort takes tens.
func sortRing(ring []ringEntry) {
	tmp := make([]ringEntry, len(ring))
	src, dst := ring, tmp
	var counts [256]int
	for shift := uint(0); shift < 64; shift += 8 {
		counts = [256]int{}
		for _, e := range src {
			counts[byte(e.hash>>shift)]++
		}
		if counts[byte(src[0].hash>>shift)] == len(src) {
			continue // every key has this byte: nothing to reorder
		}
		pos := 0
		for b, c := range counts {
			counts[b] = pos
			pos += c
		}
		for _, e := range src {
			b := byte(e.hash >> shift)
			dst[counts[b]] = e
			counts[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &ring[0] {
		copy(ring, src)
	}
	// Equal hashes (astronomically rare) keep the order of their owners,
	// which the stable passes preserved from the build order.
}

// pickConsistentHash returns the owner of the first ring point at or after
// the request's hash that is in p and that r has not tried; without a key,
// a random one.
func pickConsistentHash(s *snapshot, p *pool, r *pickRequest) *endpoint {
	ring, all, member := s.ring, s.all, p.member
	if p.ring != nil {
		ring, all, member = p.ring, p.eps, nil
	}
	n := len(ring)
	if n == 0 {
		return nil
	}
	h := r.hash
	if !r.hasHash {
		h = s.cfg.rand.uint64()
	}
	i, _ := slices.BinarySearchFunc(ring, h, func(e ringEntry, h uint64) int {
		switch {
		case e.hash < h:
			return -1
		case e.hash > h:
			return 1
		}
		return 0
	})
	for k := 0; k < n; k++ {
		e := ring[(i+k)%n]
		if member != nil && !member[e.idx] {
			continue
		}
		if ep := all[e.idx]; !r.excluded(ep) {
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
