package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/smartroute/smartroute/internal/cliflag"
)

// labelsValue is the repeatable --label k=v flag. Each Set adds one or more
// comma-separated pairs, so that the flag can be repeated on the command
// line or in the config file and also given once in the environment
// (REGAGENT_LABEL=canary=true,team=payments). A later value for the same
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

// The flag types shared with the other command.
type (
	listValue     = cliflag.List
	durationValue = cliflag.Duration
	intValue      = cliflag.Int
)
