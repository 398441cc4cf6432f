package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// labelsValue is the repeatable --label k=v flag. Each Set adds one or more
// comma-separated pairs, so that the flag can be repeated on the command
// line or in the config file and also given once in the environment
// (SMARTROUTE_LABEL=canary=true,team=payments). A later value for the same
// key wins.
type labelsValue map[string]string

func (l labelsValue) String() string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func (l labelsValue) Set(s string) error {
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return fmt.Errorf("label %q is not key=value", pair)
		}
		if k == "" {
			return fmt.Errorf("label %q has an empty key", pair)
		}
		l[k] = strings.TrimSpace(v)
	}
	return nil
}

// listValue is a comma-separated list (--etcd-endpoints). Set replaces the
// list, so that a later source does not append to an earlier one.
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
// ("time: invalid duration ...") rather than the flag package's bare
// "parse error".
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
