package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartroute/smartroute/internal/testbackend"
)

// load sends a steady stream of GET https://api/ requests through an
// http.Client whose transport is the smart client, and counts the answers
// by the backend that gave them (the X-Backend header).
type load struct {
	hc      *http.Client
	workers int
	rate    float64 // requests per second, all workers together

	start  time.Time // set by run, for the failure messages
	ok     atomic.Uint64
	failed atomic.Uint64

	mu    sync.Mutex
	by    map[string]uint64        // answers by backend name, since the start
	took  map[string]time.Duration // their summed latency
	first []error                  // the first few failures, for the summary
}

func newLoad(hc *http.Client, workers int, rate float64) *load {
	return &load{hc: hc, workers: workers, rate: rate, by: make(map[string]uint64), took: make(map[string]time.Duration)}
}

// run sends requests until ctx ends and returns when every worker has
// stopped.
func (l *load) run(ctx context.Context) {
	l.start = time.Now()
	period := time.Duration(float64(l.workers) / l.rate * float64(time.Second))
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				l.one(ctx)
			}
		})
	}
	wg.Wait()
}

// one sends one request and records its outcome. A request cut short
// because the demo is ending is not counted.
func (l *load) one(ctx context.Context) {
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "https://"+serviceName+"/", nil)
	if err != nil {
		l.fail(err)
		return
	}
	resp, err := l.hc.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return // the demo is ending, not a failure
		}
		l.fail(fmt.Errorf("request sent at %.1fs, failed %v later: %w",
			sent.Sub(l.start).Seconds(), time.Since(sent).Round(time.Millisecond), err))
		return
	}
	l.ok.Add(1)
	l.mu.Lock()
	name := resp.Header.Get(testbackend.HeaderBackend)
	l.by[name]++
	l.took[name] += time.Since(sent)
	l.mu.Unlock()
}

func (l *load) fail(err error) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.first) < 5 {
		l.first = append(l.first, err)
	}
	l.mu.Unlock()
}

// counts returns the answers by backend since the start.
func (l *load) counts() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.by)
}

// latencies returns the summed latency of the answers by backend since the
// start.
func (l *load) latencies() map[string]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.took)
}

// failures returns the number of failed requests and the first errors.
func (l *load) failures() (uint64, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed.Load(), append([]error(nil), l.first...)
}
