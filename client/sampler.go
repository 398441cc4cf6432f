package client

import (
	"math"
)

// sampler draws indexes with given probabilities in constant time: Vose's
// alias method. Building it is O(n) and happens off the request path; a
// draw is one random number and one slot read.
type sampler struct {
	slots []aliasSlot
	// front is least_latency's leaders: the endpoints within the tie band
	// of the best when the sampler was built.
	front []int32
	// set is, in a pool of more than challengerSet endpoints, the
	// challengers least_latency draws from until the next refresh:
	// challengerSet draws of the alias table, made when the sampler was
	// built (see challenger).
	set []int32
}

// challengerSet is how many challengers a refresh draws, in advance, for
// the picks of a large pool (more endpoints than this) until the next
// refresh: a pick then reads the state of endpoints among a few hundred
// (its leaders, at most maxFront, and these), which stay in the
// processor's caches, rather than of any of thousands, each a cache miss.
// Over the refreshes, every endpoint is a challenger as often as its
// weight says; within one, a pool of 10,000 draws from 128 of them, as
// Prequal's clients choose among a small pool of recent probes.
const challengerSet = 128

// withChallengerSet draws s's challenger set when its pool is larger
// than challengerSet; rand supplies the random numbers.
func (s *sampler) withChallengerSet(rand *randSource) *sampler {
	if len(s.slots) <= challengerSet {
		return s
	}
	s.set = make([]int32, challengerSet)
	for k := range s.set {
		s.set[k] = int32(s.drawBits(rand.uint64()))
	}
	return s
}

// challenger returns least_latency's challenger for the random u: drawn
// from the challenger set in a large pool, else from the alias table.
func (s *sampler) challenger(u uint64) int {
	if set := s.set; set != nil {
		return int(set[(u&0xffffffff)*uint64(len(set))>>32])
	}
	return s.drawBits(u)
}

// aliasSlot is one column of the alias table: index i is kept when the
// draw's 32 low bits are below keep, else alias is taken.
type aliasSlot struct {
	keep  uint32
	alias int32
}

// newSampler returns a sampler drawing i with probability w[i]/Σw. Weights
// must be finite and not negative, and at least one positive; an index of
// weight 0 is never drawn.
func newSampler(w []float64) *sampler {
	n := len(w)
	s := &sampler{slots: make([]aliasSlot, n)}
	if n == 0 {
		return s
	}
	var sum float64
	for _, x := range w {
		sum += x
	}
	// Scaled probabilities: 1 is an average column. small and large are
	// stacks of column indexes, kept in one array from both ends.
	scaled := make([]float64, n)
	stack := make([]int32, n)
	nsmall, nlarge := 0, n
	for i, x := range w {
		scaled[i] = x * float64(n) / sum
		if scaled[i] < 1 {
			stack[nsmall] = int32(i)
			nsmall++
		} else {
			nlarge--
			stack[nlarge] = int32(i)
		}
	}
	for nsmall > 0 && nlarge < n {
		nsmall--
		small := stack[nsmall]
		large := stack[nlarge]
		s.slots[small] = aliasSlot{keep: probability32(scaled[small]), alias: large}
		scaled[large] += scaled[small] - 1
		if scaled[large] < 1 {
			nlarge++
			stack[nsmall] = large
			nsmall++
		}
	}
	// What is left is 1 up to rounding: always kept.
	for k := 0; k < nsmall; k++ {
		i := stack[k]
		s.slots[i] = aliasSlot{keep: math.MaxUint32, alias: i}
	}
	for k := nlarge; k < n; k++ {
		i := stack[k]
		s.slots[i] = aliasSlot{keep: math.MaxUint32, alias: i}
	}
	return s
}

// probability32 scales p in [0, 1] to the 32-bit threshold of a draw.
func probability32(p float64) uint32 {
	if p >= 1 {
		return math.MaxUint32
	}
	return uint32(p * (1 << 32))
}

// drawBits returns an index chosen by the low 48 bits of the random u: the
// low 32 choose the column (Lemire's multiply-shift range reduction), the
// next 16 between it and its alias. A pick thus spends one random number
// on its leader, its challenger and a coin.
func (s *sampler) drawBits(u uint64) int {
	col := (u & 0xffffffff) * uint64(len(s.slots)) >> 32
	sl := s.slots[col]
	if uint32(u>>16)&0xffff0000 < sl.keep {
		return int(col)
	}
	return int(sl.alias)
}
