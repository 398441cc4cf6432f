//go:build !unix

package main

import "io"

// termWidth reports no terminal: outside Unix the table is printed plainly.
func termWidth(io.Writer) (int, bool) { return 0, false }
