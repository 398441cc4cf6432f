package client

import (
	"fmt"
	"math"
	"testing"
)

// TestSamplerDrawsByWeight checks the alias table's draws against their
// weights, including weights of 0 (a lone leader is left out of
// least_latency's challenger draw that way), which must never be drawn.
func TestSamplerDrawsByWeight(t *testing.T) {
	cases := map[string][]float64{
		"equal":            {1, 1, 1, 1},
		"skewed":           {1, 0.02, 0.3, 0.0001, 5},
		"zero first":       {0, 1, 0.5, 0.25},
		"zero among equal": {1, 1, 0, 1, 1},
		"one left":         {0, 0, 0.3, 0},
		"zero and floor":   {0, 0.001, 0.001, 0.001, 0.9},
	}
	const draws = 400_000
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSampler(w)
			var sum float64
			for _, x := range w {
				sum += x
			}
			got := make([]int, len(w))
			for k := range draws {
				got[s.drawBits(mix64(uint64(k)))]++
			}
			for i, x := range w {
				p := x / sum
				if x == 0 {
					if got[i] != 0 {
						t.Errorf("index %d of weight 0 drawn %d times", i, got[i])
					}
					continue
				}
				want, tol := drawsExpected(p, draws)
				if math.Abs(float64(got[i])-want) > tol {
					t.Errorf("index %d (weight %v): drawn %d times, want %.0f ± %.0f", i, x, got[i], want, tol)
				}
			}
		})
	}
}

// TestChallengerSetFollowsWeights checks the challenger set of a large
// pool: drawn by the weights, so that over many refreshes each endpoint is
// a challenger as often as with the alias table itself, and never one of
// weight 0 (a lone leader); a small pool has none and draws from the table.
func TestChallengerSetFollowsWeights(t *testing.T) {
	const n, builds = 1000, 400
	w := make([]float64, n)
	for i := range w {
		w[i] = 0.001
	}
	for i := range 10 {
		w[i] = 1
	}
	w[500] = 0 // a lone leader
	var sum float64
	for _, x := range w {
		sum += x
	}
	rand := newRandSource()
	got := make([]int, n)
	for range builds {
		s := newSampler(w).withChallengerSet(rand)
		if len(s.set) != challengerSet {
			t.Fatalf("pool of %d: challenger set of %d, want %d", n, len(s.set), challengerSet)
		}
		for k := range uint64(challengerSet) {
			// Every slot of the set is reachable.
			got[s.challenger(k<<32/challengerSet+1)]++
		}
	}
	if got[500] != 0 {
		t.Errorf("endpoint of weight 0 drawn %d times", got[500])
	}
	draws := float64(builds * challengerSet)
	check := func(what string, count int, p float64) {
		t.Helper()
		want, tol := drawsExpected(p, draws)
		if math.Abs(float64(count)-want) > tol {
			t.Errorf("%s: drawn %d times, want %.0f ± %.0f", what, count, want, tol)
		}
	}
	tail := 0
	for i, c := range got {
		if i < 10 {
			check(fmt.Sprintf("endpoint %d (weight 1)", i), c, 1/sum)
		} else {
			tail += c
		}
	}
	check("the 989 endpoints of weight 0.001", tail, 0.989/sum)

	small := newSampler(w[:challengerSet]).withChallengerSet(rand)
	if small.set != nil {
		t.Errorf("pool of %d: a challenger set of %d, want none", challengerSet, len(small.set))
	}
}

// drawsExpected returns how many of draws an index of probability p should
// get, and the tolerance: six standard deviations of a binomial count,
// plus the 2^-16 resolution of the alias coin.
func drawsExpected(p, draws float64) (want, tol float64) {
	want = p * draws
	return want, 6*math.Sqrt(want*(1-p)) + draws/65536.0 + 1
}
