package cliutil

import (
	"fmt"
	"io"
	"log/slog"
	"time"
)

// NewLogger returns the logger of --log-format (text or json) and
// --log-level, writing to w. Its values read the same in both formats:
// durations as Go writes them ("1.5s", not 1500000000 nanoseconds) and
// values with a String method (health, registration states) as their
// names, not their numbers (ReplaceAttr).
func NewLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: ReplaceAttr}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ReplaceAttr is the handlers' slog.HandlerOptions.ReplaceAttr: a
// duration becomes its text, a value with a String method (not an error,
// which slog already writes as text) its String.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
		case time.Duration:
			a.Value = slog.StringValue(v.String())
		case fmt.Stringer:
			a.Value = slog.StringValue(v.String())
		}
	}
	return a
}
