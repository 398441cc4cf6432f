package client

import (
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
				// Six standard deviations of a binomial count, plus the
				// 2^-16 resolution of the alias coin.
				want := p * draws
				tol := 6*math.Sqrt(want*(1-p)) + draws/65536.0 + 1
				if math.Abs(float64(got[i])-want) > tol {
					t.Errorf("index %d (weight %v): drawn %d times, want %.0f ± %.0f", i, x, got[i], want, tol)
				}
			}
		})
	}
}
