package cliutil

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// ApplyConfigFile sets the flags of fs still unset, and not in skip, from
// the config file at path, in github.com/peterbourgon/ff's plain format:
// one "name value" per line (the name with or without dashes), # comments.
// A line naming a flag that fs lacks is skipped when known reports that
// another command of the program has it (one file can serve several
// commands), and is an error otherwise. Errors name the file and line.
func ApplyConfigFile(fs *flag.FlagSet, path string, known func(name string) bool, skip []string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	defer f.Close()
	set := SetFlags(fs)
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		err := ff.PlainParser(strings.NewReader(s.Text()), func(name, value string) error {
			name = strings.TrimLeft(name, "-")
			switch {
			case slices.Contains(skip, name):
				return fmt.Errorf("--%s cannot be set in a config file", name)
			case fs.Lookup(name) == nil:
				if known != nil && known(name) {
					return nil
				}
				return fmt.Errorf("no flag --%s", name)
			case set[name]:
				return nil // the command line or the environment wins
			}
			if err := fs.Set(name, value); err != nil {
				return fmt.Errorf("invalid value %q for --%s: %v", redact(name, value), name, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("--config %s: line %d: %w", path, n, err)
		}
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	return nil
}

// ErrHelp is returned for -h and --help.
var ErrHelp = flag.ErrHelp

// CleanFlagError rewrites the flag package's errors to name flags with two
// dashes, as the commands' documentation does ("-n" stays).
func CleanFlagError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error parsing commandline arguments: ")
	for _, p := range []string{"for flag -", "not defined: -", "needs an argument: -"} {
		i := strings.Index(msg, p)
		if i < 0 {
			continue
		}
		j := i + len(p)
		k := j
		for k < len(msg) && msg[k] != ' ' && msg[k] != ':' {
			k++
		}
		if k-j > 1 {
			msg = msg[:j-1] + "--" + msg[j:]
		}
	}
	msg = strings.Replace(msg, "for flag ", "for ", 1)
	return errors.New(msg)
}
