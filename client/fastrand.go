package client

import (
	"math/rand/v2"
	"sync/atomic"
)

// randSource gives picks their random numbers: SplitMix64 over a counter.
// math/rand/v2's top-level functions draw from the runtime's ChaCha8
// generator, which costs several times as much (about 12 ns against 4.5
// on the machines measured); a pick needs spread, not secrecy, and one
// draw feeds its leader, its challenger and a coin. The counter is one
// atomic add, on a cache line of its own since every pick writes it.
type randSource struct {
	_     [64]byte
	state atomic.Uint64
	_     [56]byte
}

// uint64 returns a uniformly distributed pseudo-random number.
func (g *randSource) uint64() uint64 { return mix64(g.state.Add(0x9E3779B97F4A7C15)) }

// mix64 is SplitMix64's finalizer: every bit of its result depends on
// every bit of x, so that fields of one random number already spent on
// one choice can feed another without the two being correlated.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// n returns a pseudo-random int in [0, n), n > 0 (Lemire's multiply-shift
// reduction of 32 random bits).
func (g *randSource) n(n int) int { return int((g.uint64() >> 32) * uint64(n) >> 32) }

// float64 returns a pseudo-random number in [0, 1).
func (g *randSource) float64() float64 { return float64(g.uint64()>>11) / (1 << 53) }

// newRandSource returns a source seeded from the runtime's generator.
func newRandSource() *randSource {
	g := new(randSource)
	g.state.Store(rand.Uint64())
	return g
}
