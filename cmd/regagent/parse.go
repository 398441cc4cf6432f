package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// lookupEnv is os.LookupEnv's signature; tests pass a map instead.
type lookupEnv func(key string) (string, bool)

// errHelp is returned by parseFlags for -h and --help.
var errHelp = flag.ErrHelp

// parseFlags fills r from three sources, each filling only what the ones
// before it left unset:
//
//  1. the command line,
//  2. SMARTROUTE_-prefixed environment variables (--check-target is
//     SMARTROUTE_CHECK_TARGET), read through env,
//  3. the --config file (which SMARTROUTE_CONFIG may name), in ff's plain
//     format: one `flag value` per line, # comments, parsed by ff.
//
// It mirrors ff.Parse with ff.WithEnvVarPrefix, except that the environment
// is a parameter rather than the process's, so that tests run in parallel
// with their own environments.
func parseFlags(fs *flag.FlagSet, args []string, env lookupEnv) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		// The flag package names flags with one dash; this program's
		// documentation and messages use two.
		return errors.New(strings.NewReplacer("for flag -", "for --", "not defined: -", "not defined: --").Replace(err.Error()))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		key := envName(f.Name)
		v, ok := env(key)
		if !ok || v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s (--%s): %v", v, key, f.Name, err))
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	// ff applies the config file to the flags still unset: fs.Visit now
	// sees those set from the command line and from the environment.
	err := ff.Parse(fs, nil,
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(configFileParser),
	)
	if err != nil {
		return fmt.Errorf("--config %s: %w", fs.Lookup("config").Value, err)
	}
	return nil
}

// envName returns the environment variable of a flag, as ff names it.
func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(flagName))
}

// configFileParser is ff.PlainParser applied line by line, so that an error
// names the line it is on.
func configFileParser(r io.Reader, set func(name, value string) error) error {
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		err := ff.PlainParser(strings.NewReader(s.Text()), func(name, value string) error {
			name = strings.TrimLeft(name, "-")
			if err := set(name, value); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}
