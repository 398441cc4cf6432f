// Package cliflag holds the flag.Value types the smartroute commands
// (regagent, lbprobe) share, so that their flags parse, print and fail
// alike.
package cliflag

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// List is a comma-separated list (--etcd-endpoints). Set replaces the
// list, so that a later source (flag over environment over file) does not
// append to an earlier one or to a default.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set parses a comma-separated list; empty items are dropped, an empty
// list is an error.
func (l *List) Set(s string) error {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("empty list")
	}
	*l = out
	return nil
}

// Duration is a time.Duration flag whose parse error is Go's own ("time:
// invalid duration ...") rather than the flag package's bare "parse
// error".
type Duration time.Duration

func (d *Duration) String() string { return time.Duration(*d).String() }

// Set parses a Go duration such as 500ms or 10s.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%w (use Go syntax such as 500ms, 10s, 1m)", err)
	}
	*d = Duration(v)
	return nil
}

// Int is an int flag with a clear parse error.
type Int int

func (i *Int) String() string { return strconv.Itoa(int(*i)) }

// Set parses a whole number.
func (i *Int) Set(s string) error {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*i = Int(v)
	return nil
}
