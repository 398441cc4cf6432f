package testlog

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// Counted is a logger that writes through t.Log, as New does, and keeps
// the records at WARN and above, so that a test can assert that nothing
// alarming was logged.
type Counted struct {
	*slog.Logger
	mu    sync.Mutex
	warns []string
}

// NewCounted returns a Counted logger for t.
func NewCounted(t testing.TB) *Counted {
	c := &Counted{}
	c.Logger = slog.New(&countingHandler{Handler: New(t).Handler(), c: c})
	return c
}

// Warnings returns the messages logged at WARN or above so far, each with
// its "err" attribute when it has one.
func (c *Counted) Warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.warns...)
}

type countingHandler struct {
	slog.Handler
	c *Counted
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				msg += ": " + a.Value.String()
			}
			return true
		})
		h.c.mu.Lock()
		h.c.warns = append(h.c.warns, msg)
		h.c.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), c: h.c}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), c: h.c}
}
