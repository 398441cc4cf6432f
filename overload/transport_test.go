package overload_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/overload"
)

// loopbackTransport is an http.Transport for loopback tests.
func loopbackTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// get sends a GET and returns the status, or the error.
func get(hc *http.Client, url string) (int, string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestTransportThrottlesAServiceThatRefuses(t *testing.T) {
	clk := newFakeClock()
	b := testbackend.MustHTTP(t, testbackend.WithStatus(http.StatusServiceUnavailable))
	g := mustGuard(t, overload.WithClock(clk))
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t)}}
	const n = 200
	var refused, throttled int
	for range n {
		code, _, err := get(hc, b.URL())
		switch {
		case errors.Is(err, overload.ErrThrottled):
			throttled++
			if !strings.Contains(err.Error(), "throttled: rejected locally with probability") {
				t.Fatalf("throttled error %q does not say why", err)
			}
		case err != nil:
			t.Fatal(err)
		case code == http.StatusServiceUnavailable:
			refused++
		}
	}
	// Every request the service saw was one not throttled.
	if throttled == 0 || int64(refused) != b.Requests() || refused+throttled != n {
		t.Fatalf("%d refused by the service (it counted %d), %d throttled; want throttling to spare the service", refused, b.Requests(), throttled)
	}
	// At the cap (0.9) about 1 in 10 still goes out: far fewer than n.
	if refused > n/2 {
		t.Fatalf("%d of %d requests reached a service refusing them all", refused, n)
	}
	t.Logf("service refusing everything with 503: %d of %d requests reached it, %d throttled locally", refused, n, throttled)
	// The service recovers; a window later, throttling has forgotten.
	b.SetStatus(0)
	clk.Advance(overload.DefaultThrottleWindow)
	for range 20 {
		if code, _, err := get(hc, b.URL()); err != nil || code != 200 {
			t.Fatalf("after recovery: %d %v", code, err)
		}
	}
}

func TestTransportHoldsTheSlotUntilTheBodyIsClosed(t *testing.T) {
	b := testbackend.MustHTTP(t)
	g := mustGuard(t, overload.WithLimits(overload.Limits{MaxRequests: 1}))
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t)}}
	resp, err := hc.Get(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(hc, b.URL()); !errors.Is(err, overload.ErrConcurrencyLimit) {
		t.Fatalf("second request while the first body is open: %v; want ErrConcurrencyLimit", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if code, _, err := get(hc, b.URL()); err != nil || code != 200 {
		t.Fatalf("request after the body was closed: %d %v", code, err)
	}
	if n := g.Status().InFlight; n != 0 {
		t.Fatalf("in flight at the end: %d", n)
	}
}

func TestTransportFallbackAnswersRefusedRequests(t *testing.T) {
	clk := newFakeClock()
	b := testbackend.MustHTTP(t, testbackend.WithStatus(http.StatusInternalServerError))
	g := mustGuard(t, overload.WithClock(clk), overload.WithoutThrottling(),
		overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorRatio}))
	var fellBack int
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t),
		Fallback: func(req *http.Request, err error) (*http.Response, error) {
			fellBack++
			if !errors.Is(err, overload.ErrBreakerOpen) {
				t.Errorf("fallback got %v; want ErrBreakerOpen", err)
			}
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("cached")), Request: req, Header: http.Header{}}, nil
		}}}
	for range 10 {
		if code, _, err := get(hc, b.URL()); err != nil || code != 500 {
			t.Fatalf("before the breaker opened: %d %v", code, err)
		}
	}
	code, body, err := get(hc, b.URL())
	if err != nil || code != 200 || body != "cached" || fellBack != 1 {
		t.Fatalf("with the breaker open: %d %q %v (fallbacks %d); want the fallback's answer", code, body, err, fellBack)
	}
	if b.Requests() != 10 {
		t.Fatalf("service saw %d requests; want 10 (none after the breaker opened)", b.Requests())
	}
}

func TestTransportCountsRetriesMarkedByContext(t *testing.T) {
	b := testbackend.MustHTTP(t, testbackend.WithLatency(time.Minute))
	g := mustGuard(t, overload.WithLimits(overload.Limits{MaxRetries: 1}))
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t)}}
	ctx, cancel := context.WithCancel(overload.RetryContext(context.Background()))
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL(), nil)
		_, err := hc.Do(req)
		done <- err
	}()
	waitFor(t, "the retry in flight", func() bool { return g.Status().RetriesInFlight == 1 })
	req, _ := http.NewRequestWithContext(overload.RetryContext(context.Background()), http.MethodGet, b.URL(), nil)
	if _, err := hc.Do(req); !errors.Is(err, overload.ErrConcurrencyLimit) {
		t.Fatalf("second retry: %v; want ErrConcurrencyLimit", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled retry: %v", err)
	}
	waitFor(t, "the retry slot back", func() bool { return g.Status().RetriesInFlight == 0 })
}

func TestTransportBodyClosedWhileReadReleasesOnce(t *testing.T) {
	b := testbackend.MustHTTP(t)
	g := mustGuard(t, overload.WithLimits(overload.Limits{MaxRequests: 2}))
	hc := &http.Client{Transport: &overload.Transport{Guard: g, Base: loopbackTransport(t)}}
	for range 50 {
		resp, err := hc.Get(b.URL())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = io.Copy(io.Discard, resp.Body) })
		wg.Go(func() { resp.Body.Close() })
		wg.Wait()
		resp.Body.Close()
	}
	// A double release would leave the count below zero, and let three in.
	if n := g.Status().InFlight; n != 0 {
		t.Fatalf("in flight after every body was closed: %d; want 0", n)
	}
}
