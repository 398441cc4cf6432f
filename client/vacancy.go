package client

import "time"

// Vacancies: an answer whose server reported room for more requests makes
// its endpoint a candidate for the client's next pick (least_latency).

// vacancyMaxAge is how long a vacancy stays a candidate: a client's next
// request normally follows its answer at once; one that comes later would
// find the room taken by someone else as likely as not.
const vacancyMaxAge = 2 * time.Millisecond

// unqueuedSlack: an answer within this factor of the endpoint's latency
// floor did not queue, which is all a client knows of an endpoint's room
// when its server reports no load.
const unqueuedSlack = 1.25

// A packed vacancy holds the endpoint's index in its pool (low 32 bits)
// and the time in units of 2^16 ns (high 32 bits, never 0: 0 marks none).
// The vacancy lives in the pool, so a rebuild, which makes new pools,
// drops it rather than let it name another endpoint.
const vacancyTimeShift = 16

func packVacancy(idx int, now int64) uint64 {
	return uint64(now>>vacancyTimeShift|1)<<32 | uint64(uint32(idx))
}

// markVacant records that ep's server reported room at now, in the pool of
// the current snapshot that ep's first attempts are picked from.
func (t *table) markVacant(ep *endpoint, now int64) {
	s := t.snapshot()
	i := int(ep.poolIdx.Load())
	for _, p := range [...]*pool{s.stable, s.canary} {
		if i < len(p.eps) && p.eps[i] == ep {
			p.vacancy.Store(packVacancy(i, now))
			return
		}
	}
}

// takeVacancy returns the index of the pool's latest vacancy if it is
// fresh at now, and clears it so that one pick takes it; -1 if none.
func (p *pool) takeVacancy(now int64) int {
	v := p.vacancy.Load()
	if v == 0 || !p.vacancy.CompareAndSwap(v, 0) {
		return -1
	}
	at := int64(v>>32) << vacancyTimeShift
	if now-at > int64(vacancyMaxAge) {
		return -1
	}
	return int(uint32(v))
}
