package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// listValue is a comma-separated list (--etcd-endpoints). Set replaces the
// list, so that the environment does not append to a default.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
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

// durationValue is a time.Duration flag whose parse error is Go's own
// rather than the flag package's bare "parse error".
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%w (use Go syntax such as 500ms, 10s, 1m)", err)
	}
	*d = durationValue(v)
	return nil
}

// intValue is an int flag with a clear parse error.
type intValue int

func (i *intValue) String() string { return strconv.Itoa(int(*i)) }

func (i *intValue) Set(s string) error {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*i = intValue(v)
	return nil
}
