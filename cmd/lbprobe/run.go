package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// Exit codes: the table both commands share (cliutil.ExitCodesHelp).
const (
	exitOK      = cliutil.ExitOK      // all healthy, all valid, done
	exitSome    = cliutil.ExitSome    // some unhealthy or invalid
	exitUsage   = cliutil.ExitUsage   // a bad flag, argument, environment variable, config file or target
	exitEtcd    = cliutil.ExitEtcd    // etcd unusable, or the target not resolved
	exitNone    = cliutil.ExitNone    // none healthy, no pick, none valid, a write refused
	exitFailure = cliutil.ExitFailure // interrupted, output not written
)

// envPrefix prefixes the environment variable of a flag: --etcd-endpoints
// is LBPROBE_ETCD_ENDPOINTS. It is the command's own, so that a variable
// meant for regagent never changes lbprobe.
const envPrefix = "LBPROBE"

// version is lbprobe's version, set by release builds with
// -ldflags "-X main.version=v1.2.3" (see cliutil.Version).
var version = ""

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
	// format is the output format asked for: failures are written as
	// JSON on stdout too when it is JSON.
	format cliutil.Format
	// env is the environment (os.LookupEnv; tests pass a map).
	env cliutil.LookupEnv
	// showVersion is the root's --version.
	showVersion bool
}

// run is the whole program but for signal handling: it parses args, runs
// the selected subcommand until it is done or ctx ends, and returns the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, os.LookupEnv, stdout, stderr)
}

// runEnv is run with the environment read through env.
func runEnv(ctx context.Context, args []string, env cliutil.LookupEnv, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, paths: map[*ffcli.Command]string{}, noEnv: map[*ffcli.Command][]string{},
		format: cliutil.FormatInArgs(args), env: env}
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
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(a.stderr, "%s: %s\nusage: %s\nRun '%s -h' for the flags.\n",
		a.paths[cmd], msg, cmd.ShortUsage, a.paths[cmd])
	if a.format.IsJSON() {
		cliutil.WriteError(a.stdout, errors.New(msg), exitUsage)
	}
	return exitUsage
}

// fail prints a runtime error on one line (and with -o json, as a JSON
// document on stdout) and returns code.
func (a *app) fail(code int, format string, args ...any) int {
	return a.failErr(code, fmt.Errorf(format, args...))
}

// failErr is fail with an error: an etcd failure's cause is named in the
// JSON document.
func (a *app) failErr(code int, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(a.stderr, "lbprobe: %s\n", msg)
	if a.format.IsJSON() {
		cliutil.WriteError(a.stdout, &oneLine{msg, err}, code)
	}
	return code
}

// oneLine is err with its message on one line.
type oneLine struct {
	msg string
	err error
}

func (o *oneLine) Error() string { return o.msg }
func (o *oneLine) Unwrap() error { return o.err }

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

// cleanFlagError turns the errors of ff and the flag package into one line
// that names flags the way this program's documentation does, with two
// dashes.
func cleanFlagError(err error) error {
	var u usageError
	if errors.As(err, &u) {
		return u
	}
	return cliutil.CleanFlagError(err)
}

// failOrUsage returns a usage error for exec to report, and reports any
// other error as a runtime failure: exitEtcd for etcd's, interrupted
// (exitFailure) when ctx ended, exitNone otherwise.
func (a *app) failOrUsage(err error) (int, error) {
	var u usageError
	if errors.As(err, &u) {
		return 0, err
	}
	if errors.Is(err, context.Canceled) {
		return a.fail(exitFailure, "interrupted"), nil
	}
	return a.failErr(exitCodeOf(err, exitNone), err), nil
}
