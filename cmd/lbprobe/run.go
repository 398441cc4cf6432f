package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// Exit codes, as documented in doc.go.
const (
	// exitOK: every endpoint probed is healthy, every identity checked is
	// valid, or the command did what it was asked (watch interrupted,
	// certs put written).
	exitOK = 0
	// exitSome: some endpoints are unhealthy (at least one is healthy), or
	// some identities are invalid (at least one is valid).
	exitSome = 1
	// exitFailure: no endpoint is healthy, the target could not be
	// resolved (etcd unreachable, no such name, no instances), no identity
	// is valid, or a write was refused.
	exitFailure = 2
	// exitUsage: a bad flag, argument, environment variable or target
	// string (sysexits.h's EX_USAGE).
	exitUsage = 64
)

// envPrefix prefixes the environment variable of a flag, as for regagent:
// --etcd-endpoints is SMARTROUTE_ETCD_ENDPOINTS.
const envPrefix = "SMARTROUTE"

// usageError is an error in what the user typed; run prints it with the
// command's usage line and exits exitUsage.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// app is one run of the program: where it writes, and what it returns.
type app struct {
	stdout, stderr io.Writer
	code           int
	// subArgs are the arguments after the selected subcommand's name, for
	// the second flag pass (flags after the target).
	subArgs []string
	// paths names every command: "lbprobe certs list".
	paths map[*ffcli.Command]string
	// noEnv lists, per command, the flags the environment does not set.
	noEnv map[*ffcli.Command][]string
}

// run is the whole program but for signal handling: it parses args, runs
// the selected subcommand until it is done or ctx ends, and returns the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, paths: map[*ffcli.Command]string{}, noEnv: map[*ffcli.Command][]string{}}
	root := a.commandTree()
	cmd, subArgs := selectCommand(root, args)
	a.subArgs = subArgs
	if err := root.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, a.usageText(cmd))
			return exitOK
		}
		var noExec ffcli.NoExecError
		if errors.As(err, &noExec) {
			return a.usageFailure(cmd, errors.New("missing subcommand"))
		}
		return a.usageFailure(cmd, cleanFlagError(err))
	}
	if err := root.Run(ctx); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, a.usageText(cmd))
			return exitOK
		}
		return a.usageFailure(cmd, err)
	}
	return a.code
}

// usageFailure prints a usage error on one line, then the command's usage
// line and where to find more, and returns exitUsage.
func (a *app) usageFailure(cmd *ffcli.Command, err error) int {
	fmt.Fprintf(a.stderr, "%s: %v\nusage: %s\nRun '%s -h' for the flags.\n",
		a.paths[cmd], err, cmd.ShortUsage, a.paths[cmd])
	return exitUsage
}

// fail prints a runtime error on one line and returns code.
func (a *app) fail(code int, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	msg = strings.ReplaceAll(msg, "\n", "; ")
	fmt.Fprintf(a.stderr, "lbprobe: %s\n", msg)
	return code
}

// selectCommand returns the command args select, as ffcli will, and the
// arguments after its name. The root command has only boolean flags, so
// the first argument that is not a flag names the subcommand.
func selectCommand(root *ffcli.Command, args []string) (*ffcli.Command, []string) {
	cmd := root
	rest := args
	for {
		i := 0
		for i < len(rest) && strings.HasPrefix(rest[i], "-") && rest[i] != "-" {
			if rest[i] == "--" {
				return cmd, rest
			}
			i++
		}
		if i >= len(rest) {
			return cmd, rest
		}
		var next *ffcli.Command
		for _, sub := range cmd.Subcommands {
			if strings.EqualFold(sub.Name, rest[i]) {
				next = sub
			}
		}
		if next == nil {
			return cmd, rest
		}
		cmd, rest = next, rest[i+1:]
	}
}

// flagNameRE finds the flag names, written with one dash, in the flag
// package's errors.
var flagNameRE = regexp.MustCompile(`(for flag|not defined:|needs an argument:) -[A-Za-z0-9][-A-Za-z0-9]*`)

// cleanFlagError turns the errors of ff and the flag package into one line
// that names flags the way this program's documentation does, with two
// dashes.
func cleanFlagError(err error) error {
	var u usageError
	if errors.As(err, &u) {
		return u
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error parsing commandline arguments: ")
	msg = flagNameRE.ReplaceAllStringFunc(msg, func(m string) string {
		i := strings.LastIndex(m, " -")
		name := m[i+2:]
		if len(name) > 1 {
			return m[:i] + " --" + name
		}
		return m
	})
	msg = strings.Replace(msg, "for flag ", "for ", 1)
	return errors.New(msg)
}

// failOrUsage returns a usage error for exec to report, and reports any
// other error as a runtime failure (exitFailure).
func (a *app) failOrUsage(err error) (int, error) {
	var u usageError
	if errors.As(err, &u) {
		return 0, err
	}
	return a.fail(exitFailure, "%v", err), nil
}
