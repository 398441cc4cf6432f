package client

import (
	"container/heap"
)

// maxScheduleLen bounds a weighted round-robin schedule. Weights whose sum
// exceeds it are scaled down in proportion (each keeping at least 1), which
// keeps the rebuild fast and the proportions within a fraction of a
// percent.
const maxScheduleLen = 1 << 16

// nginxLimit is the work (schedule length × endpoints) up to which the
// schedule is computed with nginx's own smooth algorithm; beyond it an
// earliest-deadline-first heap produces an equally proportioned, almost as
// smooth sequence in n log n.
const nginxLimit = 1 << 22

// pickWeightedRoundRobin returns the next endpoint of the precomputed
// schedule that r has not tried.
func pickWeightedRoundRobin(p *pool, r *pickRequest) *endpoint {
	n := uint64(len(p.wrr))
	if n == 0 {
		return nil
	}
	start := p.next.Add(1)
	for k := uint64(0); k < n; k++ {
		ep := p.eps[p.wrr[(start+k)%n]]
		if !r.excluded(ep) {
			return ep
		}
	}
	return nil
}

// effectiveWeights returns the weights of eps at now: resolver weight,
// scaled by slow start, reduced by their common divisor and scaled to fit
// maxScheduleLen.
func effectiveWeights(eps []*endpoint, cfg *config, now int64) ([]int, int) {
	w := make([]int, len(eps))
	g, total := 0, 0
	for i, ep := range eps {
		x := int(ep.weight())
		if cfg.slowStart > 0 {
			// Scale by 1000 to keep slow start's fractions, then reduce.
			x = max(1, int(float64(x)*1000*ep.slowStartFactor(now, cfg.slowStart, cfg.slowStartMin)))
		}
		w[i] = x
		g = gcd(g, x)
		total += x
	}
	if g > 1 {
		total = 0
		for i := range w {
			w[i] /= g
			total += w[i]
		}
	}
	if total > maxScheduleLen {
		scale := float64(maxScheduleLen) / float64(total)
		total = 0
		for i := range w {
			w[i] = max(1, int(float64(w[i])*scale))
			total += w[i]
		}
	}
	return w, total
}

// smoothWRRSchedule returns one full cycle of picks, as indexes into eps.
func smoothWRRSchedule(eps []*endpoint, cfg *config, now int64) []int32 {
	if len(eps) == 0 {
		return nil
	}
	w, total := effectiveWeights(eps, cfg, now)
	if total*len(eps) <= nginxLimit {
		return nginxSchedule(w, total)
	}
	return edfSchedule(w, total)
}

// nginxSchedule is nginx's smooth weighted round robin
// (ngx_http_upstream_get_peer): every step each peer's current weight grows
// by its weight, the largest is picked and loses the total.
func nginxSchedule(w []int, total int) []int32 {
	cur := make([]int, len(w))
	out := make([]int32, total)
	for step := range out {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[step] = int32(best)
	}
	return out
}

// edfSchedule picks, at every step, the endpoint whose next deadline (the
// middle of its k-th share of the cycle) comes first.
func edfSchedule(w []int, total int) []int32 {
	h := make(edfHeap, len(w))
	for i, x := range w {
		h[i] = edfItem{deadline: 0.5 / float64(x), idx: int32(i), step: 1 / float64(x)}
	}
	heap.Init(&h)
	out := make([]int32, total)
	for k := range out {
		out[k] = h[0].idx
		h[0].deadline += h[0].step
		heap.Fix(&h, 0)
	}
	return out
}

type edfItem struct {
	deadline, step float64
	idx            int32
}

type edfHeap []edfItem

func (h edfHeap) Len() int { return len(h) }
func (h edfHeap) Less(i, j int) bool {
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return h[i].idx < h[j].idx
}
func (h edfHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *edfHeap) Push(x any)   { *h = append(*h, x.(edfItem)) }
func (h *edfHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
