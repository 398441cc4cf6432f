package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// lookupEnv is os.LookupEnv's signature; tests pass a map instead.
type lookupEnv = cliutil.LookupEnv

// errHelp is returned by parseFlags for -h and --help.
var errHelp = flag.ErrHelp

// parseFlags fills r from three sources, each filling only what the ones
// before it left unset:
//
//  1. the command line,
//  2. REGAGENT_-prefixed environment variables (--check-target is
//     REGAGENT_CHECK_TARGET), read through env,
//  3. the --config file (which REGAGENT_CONFIG may name), in ff's plain
//     format: one "flag value" per line, # comments.
//
// --version is read from the command line only. It returns the flags
// given on the command line (for the warnings about passwords in ps).
func parseFlags(fs *flag.FlagSet, args []string, env lookupEnv) (map[string]bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, cliutil.CleanFlagError(err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	cmdline := cliutil.SetFlags(fs)
	if cmdline["version"] {
		return cmdline, nil // nothing else matters
	}
	if err := cliutil.ApplyEnv(fs, envPrefix, env, noEnvFlags); err != nil {
		return cmdline, err
	}
	if path := fs.Lookup("config").Value.String(); path != "" {
		if err := cliutil.ApplyConfigFile(fs, path, nil, append([]string{"config"}, noEnvFlags...)); err != nil {
			return cmdline, err
		}
	}
	return cmdline, nil
}

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return cliutil.EnvName(envPrefix, flagName)
}

// joinLines is errors.Join's text with each line prefixed.
func joinLines(err error, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(err.Error(), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}
