// Package testlog gives tests a *slog.Logger that writes through t.Log, so
// that logs show only for failing tests (or with -v) and are attributed to
// the test that produced them.
package testlog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// New returns a logger writing to t.Log at debug level. Lines logged after
// the test has finished (by goroutines still shutting down) are dropped
// instead of panicking.
func New(t testing.TB) *slog.Logger {
	w := &writer{t: t}
	t.Cleanup(w.finish)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(bytes.Clone(p)), "\n"))
	}
	return len(p), nil
}

func (w *writer) finish() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
