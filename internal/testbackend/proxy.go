package testbackend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy is an in-process toxiproxy TCP proxy on loopback in front of one
// upstream address. Faults are toxics added with its methods; each method
// replaces an earlier toxic of the same kind and applies to connections
// already open as well as new ones.
type Proxy struct {
	upstream string
	p        *toxiproxy.Proxy
}

// NewProxy starts a proxy on 127.0.0.1 and a free port that forwards to
// upstream.
func NewProxy(upstream string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "testbackend", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("testbackend: proxy to %s: %w", upstream, err)
	}
	return &Proxy{upstream: upstream, p: p}, nil
}

// MustProxy is NewProxy for tests: it fails t on error and closes the proxy
// in t.Cleanup.
func MustProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := NewProxy(upstream)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr returns the host:port clients dial; it stays the same across
// Disable and Enable.
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// toxic adds (or replaces) the toxic named typ_stream.
func (p *Proxy) toxic(typ, stream string, attrs map[string]any) error {
	name := typ + "_" + stream
	if p.p.Toxics.GetToxic(name) != nil {
		if err := p.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("testbackend: proxy: remove %s: %w", name, err)
		}
	}
	body, err := json.Marshal(map[string]any{
		"name":       name,
		"type":       typ,
		"stream":     stream,
		"toxicity":   1.0,
		"attributes": attrs,
	})
	if err != nil {
		return err
	}
	if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("testbackend: proxy: add %s: %w", name, err)
	}
	return nil
}

// AddLatency delays the data coming back from upstream by d ± jitter, so
// each request/response round trip takes about d longer.
func (p *Proxy) AddLatency(d, jitter time.Duration) error {
	return p.toxic("latency", "downstream", map[string]any{
		"latency": d.Milliseconds(),
		"jitter":  jitter.Milliseconds(),
	})
}

// Blackhole stops all data in both directions without closing the
// connections: connects succeed, nothing is ever answered. New connections
// are accepted by the proxy too.
func (p *Proxy) Blackhole() error {
	if err := p.toxic("timeout", "upstream", map[string]any{"timeout": 0}); err != nil {
		return err
	}
	return p.toxic("timeout", "downstream", map[string]any{"timeout": 0})
}

// Timeout stops all data and closes each connection d after its data
// stopped.
func (p *Proxy) Timeout(d time.Duration) error {
	return p.toxic("timeout", "downstream", map[string]any{"timeout": max(d.Milliseconds(), 1)})
}

// ResetPeer resets (TCP RST) connections after d (0: as soon as data
// flows).
func (p *Proxy) ResetPeer(d time.Duration) error {
	return p.toxic("reset_peer", "upstream", map[string]any{"timeout": d.Milliseconds()})
}

// SlowClose delays the closing of connections from upstream by d.
func (p *Proxy) SlowClose(d time.Duration) error {
	return p.toxic("slow_close", "downstream", map[string]any{"delay": d.Milliseconds()})
}

// Slicer cuts the data from upstream into pieces of about size bytes
// (± variation, which must be smaller than size) with delay between them;
// Slicer(1, 0, d) delivers byte by byte.
func (p *Proxy) Slicer(size, variation int, delay time.Duration) error {
	return p.toxic("slicer", "downstream", map[string]any{
		"average_size":   size,
		"size_variation": variation,
		"delay":          delay.Microseconds(),
	})
}

// Bandwidth limits the data from upstream to kbPerSec kilobytes per
// second.
func (p *Proxy) Bandwidth(kbPerSec int64) error {
	return p.toxic("bandwidth", "downstream", map[string]any{"rate": kbPerSec})
}

// RemoveToxics removes every toxic: the proxy forwards cleanly again.
func (p *Proxy) RemoveToxics() {
	p.p.Toxics.ResetToxics(context.Background())
}

// Disable stops listening and closes every proxied connection: the address
// refuses connections, as if the upstream host were down.
func (p *Proxy) Disable() { p.p.Stop() }

// Enable listens again on the same address after Disable.
func (p *Proxy) Enable() error {
	if err := p.p.Start(); err != nil && err != toxiproxy.ErrProxyAlreadyStarted {
		return fmt.Errorf("testbackend: proxy enable: %w", err)
	}
	return nil
}

// Close disables the proxy. It is idempotent.
func (p *Proxy) Close() error {
	p.p.Stop()
	return nil
}
