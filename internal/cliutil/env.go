package cliutil

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
)

// LookupEnv is os.LookupEnv's signature; tests pass a map instead.
type LookupEnv func(key string) (string, bool)

// LegacyEnvPrefix is the prefix both commands read before each got its
// own: SMARTROUTE_CHECK meant for one changed the other. The old names
// are no longer read; LegacyEnvWarnings names the ones set.
const LegacyEnvPrefix = "SMARTROUTE"

// EnvName returns the environment variable of a flag under prefix:
// --etcd-endpoints under REGAGENT is REGAGENT_ETCD_ENDPOINTS.
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// SetFlags returns the names of the flags set so far on fs.
func SetFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// ApplyEnv sets every flag of fs that is still unset and not in skip from
// its environment variable under prefix, when that is set and not empty.
// It reports every bad value, each naming the variable and the flag.
func ApplyEnv(fs *flag.FlagSet, prefix string, lookup LookupEnv, skip []string) error {
	set := SetFlags(fs)
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || slices.Contains(skip, f.Name) {
			return
		}
		key := EnvName(prefix, f.Name)
		v, ok := lookup(key)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s (--%s): %v", redact(f.Name, v), key, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// LegacyEnvWarnings returns one warning for each SMARTROUTE_ variable of a
// flag of fs that is set: it is no longer read, and its new name is under
// prefix.
func LegacyEnvWarnings(fs *flag.FlagSet, prefix string, lookup LookupEnv, skip []string) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(skip, f.Name) {
			return
		}
		old := EnvName(LegacyEnvPrefix, f.Name)
		if v, ok := lookup(old); ok && v != "" {
			out = append(out, fmt.Sprintf("%s is no longer read: set %s instead", old, EnvName(prefix, f.Name)))
		}
	})
	return out
}

// redact hides the value of a secret flag in messages.
func redact(flagName, v string) string {
	if strings.Contains(flagName, "password") {
		return "***"
	}
	return v
}
