package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// screen serialises the demo's output: narration lines, and the endpoint
// table. On a terminal the table stays at the bottom and is redrawn in place
// (ANSI cursor movement) while narration scrolls above it; otherwise each
// table is printed in full, once a second, and nothing but plain text is
// written.
type screen struct {
	w     io.Writer
	ansi  bool // redraw the table in place
	quiet bool // no table
	start time.Time

	mu        sync.Mutex
	drawn     int      // lines of the table currently on screen (ansi)
	lastTable []string // the table on screen, redrawn under new narration
}

// isTerminal reports whether w is a terminal whose width is known.
func isTerminal(w io.Writer) bool {
	_, ok := termWidth(w)
	return ok
}

// elapsed formats the time since the start as the narration's prefix.
func (s *screen) elapsed() string {
	return fmt.Sprintf("[%5.1fs]", time.Since(s.start).Seconds())
}

// say prints one narration line, prefixed with the elapsed time.
func (s *screen) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := s.elapsed() + " " + fmt.Sprintf(format, args...)
	if !s.ansi {
		fmt.Fprintln(s.w, line)
		return
	}
	s.clearLocked()
	fmt.Fprintln(s.w, line)
	s.drawLocked(s.lastTable)
}

// printf prints text as it is, with no prefix (setup and summary).
func (s *screen) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ansi {
		s.clearLocked()
		defer s.drawLocked(s.lastTable)
	}
	fmt.Fprintf(s.w, format, args...)
}

// table shows the endpoint table: redrawn in place on a terminal, printed
// below what came before otherwise.
func (s *screen) table(lines []string) {
	if s.quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ansi {
		fmt.Fprintln(s.w, strings.Join(lines, "\n"))
		return
	}
	s.clearLocked()
	s.drawLocked(lines)
}

// freeze leaves the table on screen as it is and stops redrawing it, so
// that what follows prints below it.
func (s *screen) freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drawn = 0
	s.lastTable = nil
}

func (s *screen) clearLocked() {
	if s.drawn > 0 {
		// Up to the table's first line, then clear to the end of the screen.
		fmt.Fprintf(s.w, "\x1b[%dA\r\x1b[J", s.drawn)
		s.drawn = 0
	}
}

// drawLocked prints the table, each line cut to the terminal's width: a
// line that wrapped would take two rows, and the next redraw would move
// the cursor up too little.
func (s *screen) drawLocked(lines []string) {
	s.lastTable = lines
	width, _ := termWidth(s.w)
	for _, l := range lines {
		if r := []rune(l); width > 1 && len(r) >= width {
			l = string(r[:width-1])
		}
		fmt.Fprintln(s.w, l)
	}
	s.drawn = len(lines)
}
