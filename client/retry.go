package client

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// RetryPolicy says when a failed request is tried again on another
// endpoint. A request is retried only when repeating it is safe: its
// method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or it
// carries an Idempotency-Key header, or it failed before any byte of it
// reached a server (the connection could not be made). Its body must be
// replayable (Request.GetBody, set by http.NewRequest for the usual body
// types) or empty. Retries draw from a retry budget so that they cannot
// multiply the load of a struggling service. Zero fields take the
// defaults.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt
	// (default 2).
	MaxRetries int `json:"maxRetries,omitempty"`
	// RetryOn lists the response statuses that are retried for safe
	// requests (default 502, 503, 504: the answers of a gateway or server
	// that did not do the work). Connection failures are always retried.
	RetryOn []int `json:"retryOn,omitempty"`
	// PerTryTimeout ends an attempt whose response headers have not come
	// in time (reading the body is not limited by it) and,
	// for a safe request, retries it elsewhere: how a client gets past an
	// endpoint that accepts connections but never answers (default 0: no
	// per-try limit; the request's context still applies).
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	// Budget bounds retries and hedges together.
	Budget RetryBudget `json:"budget,omitempty"`
	// Disabled turns retries off.
	Disabled bool `json:"disabled,omitempty"`
}

// RetryBudget is Finagle's retry budget: within a sliding TTL window,
// retries (and hedges) may be up to Ratio of the requests plus
// MinPerSecond × TTL. Zero fields take the defaults.
type RetryBudget struct {
	// Ratio of retries to requests (default 0.2, Finagle's and Linkerd's
	// 20%).
	Ratio float64 `json:"ratio,omitempty"`
	// MinPerSecond retries are always allowed, so that a client with
	// little traffic can still retry (default 10).
	MinPerSecond float64 `json:"minPerSecond,omitempty"`
	// TTL is the window over which requests and retries are counted
	// (default 10 s).
	TTL time.Duration `json:"ttl,omitempty"`
}

// Defaults of RetryPolicy.
const (
	DefaultMaxRetries        = 2
	DefaultRetryBudgetRatio  = 0.2
	DefaultRetryMinPerSecond = 10
	DefaultRetryBudgetTTL    = 10 * time.Second
	maxRetriesLimit          = maxAttempts - 1
	idempotencyKeyHeader     = "Idempotency-Key"
	idempotencyKeyHeaderAlt  = "X-Idempotency-Key"
	budgetBuckets            = 10
)

var defaultRetryOn = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.MaxRetries == 0 {
		r.MaxRetries = DefaultMaxRetries
	}
	if r.RetryOn == nil {
		r.RetryOn = defaultRetryOn
	}
	r.RetryOn = slices.Clone(r.RetryOn)
	if r.Budget.Ratio == 0 {
		r.Budget.Ratio = DefaultRetryBudgetRatio
	}
	if r.Budget.MinPerSecond == 0 {
		r.Budget.MinPerSecond = DefaultRetryMinPerSecond
	}
	if r.Budget.TTL == 0 {
		r.Budget.TTL = DefaultRetryBudgetTTL
	}
	return r
}

func (r RetryPolicy) validate() error {
	switch {
	case r.MaxRetries < 0 || r.MaxRetries > maxRetriesLimit:
		return fmt.Errorf("client: retries: maxRetries %d must be within [0, %d]", r.MaxRetries, maxRetriesLimit)
	case r.Budget.Ratio < 0:
		return fmt.Errorf("client: retries: budget ratio %v must not be negative", r.Budget.Ratio)
	case r.Budget.MinPerSecond < 0:
		return fmt.Errorf("client: retries: budget minPerSecond %v must not be negative", r.Budget.MinPerSecond)
	case r.PerTryTimeout < 0:
		return fmt.Errorf("client: retries: perTryTimeout %v must not be negative", r.PerTryTimeout)
	case r.Budget.TTL < time.Second:
		return fmt.Errorf("client: retries: budget ttl %v must be at least 1s", r.Budget.TTL)
	}
	for _, s := range r.RetryOn {
		if s < 100 || s > 599 {
			return fmt.Errorf("client: retries: retryOn status %d is not an HTTP status", s)
		}
	}
	return nil
}

func (r *RetryPolicy) retriesStatus(code int) bool { return slices.Contains(r.RetryOn, code) }

// idempotent reports whether req may be sent twice (RFC 9110 §9.2.2, and
// the Idempotency-Key convention that net/http also honours).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, ok := req.Header[idempotencyKeyHeader]
	_, alt := req.Header[idempotencyKeyHeaderAlt]
	return ok || alt
}

// replayable reports whether req's body can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// retryBudget counts requests and retries in a sliding window of
// budgetBuckets buckets. Counters are atomics; a bucket that has gone stale
// is reset by whoever sees it first, and a rare lost count under that race
// is acceptable for a budget.
type retryBudget struct {
	cfg     RetryBudget
	width   int64 // bucket width, ns
	buckets [budgetBuckets]budgetBucket
}

type budgetBucket struct {
	epoch    atomic.Int64 // which window slot the counts belong to
	requests atomic.Int64
	retries  atomic.Int64
}

func newRetryBudget(cfg RetryBudget) *retryBudget {
	return &retryBudget{cfg: cfg, width: int64(cfg.TTL) / budgetBuckets}
}

func (b *retryBudget) bucket(now int64) *budgetBucket {
	slot := now / b.width
	bk := &b.buckets[slot%budgetBuckets]
	if old := bk.epoch.Load(); old != slot && bk.epoch.CompareAndSwap(old, slot) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// request records one request (first attempt).
func (b *retryBudget) request(now int64) { b.bucket(now).requests.Add(1) }

// withdraw takes one retry from the budget, reporting whether it was
// there.
func (b *retryBudget) withdraw(now int64) bool {
	slot := now / b.width
	var requests, retries int64
	for i := range b.buckets {
		bk := &b.buckets[i]
		if e := bk.epoch.Load(); e > slot-budgetBuckets && e <= slot {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	allowed := b.cfg.Ratio*float64(requests) + b.cfg.MinPerSecond*b.cfg.TTL.Seconds()
	if float64(retries) >= allowed {
		return false
	}
	b.bucket(now).retries.Add(1)
	return true
}
