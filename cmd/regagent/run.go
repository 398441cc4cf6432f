package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// Exit codes: the table both commands share (cliutil), of which regagent
// uses these.
const (
	exitOK      = cliutil.ExitOK      // drained and deregistered, or never registered
	exitUsage   = cliutil.ExitUsage   // a bad flag, environment variable or config file
	exitEtcd    = cliutil.ExitEtcd    // shut down while etcd had never answered
	exitFailure = cliutil.ExitFailure // --listen taken, a second signal
)

// run is the whole program but for signal handling: it parses args (and
// the environment through env, and the --config file), then runs the agent
// until ctx ends, drains and deregisters. It returns the exit code.
func run(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	usageErr := func(err error) int {
		// One line per problem: validation reports them all at once.
		fmt.Fprint(stderr, joinLines(err, "regagent: "))
		fmt.Fprintln(stderr, "Run 'regagent -h' for usage.")
		return exitUsage
	}
	r, fs, cmdline, err := parseArgs(args, env)
	if err != nil {
		if errors.Is(err, errHelp) {
			printUsage(stdout, fs)
			return exitOK
		}
		return usageErr(err)
	}
	if r.version {
		fmt.Fprintf(stdout, "regagent %s\n", versionString())
		return exitOK
	}
	for _, w := range cliutil.LegacyEnvWarnings(fs, envPrefix, env, noEnvFlags) {
		fmt.Fprintf(stderr, "regagent: warning: %s\n", w)
	}
	cfg, err := r.validate()
	if err != nil {
		return usageErr(err)
	}
	for _, w := range r.etcd.Warnings(cmdline) {
		fmt.Fprintf(stderr, "regagent: warning: %s\n", w)
	}
	a, err := newAgent(cfg, cliutil.NewLogger(stderr, cfg.logFormat, cfg.logLevel))
	if err != nil {
		return usageErr(err)
	}
	return a.run(ctx)
}

// parseArgs parses the flags from args, env and the config file.
func parseArgs(args []string, env lookupEnv) (*rawFlags, *flag.FlagSet, map[string]bool, error) {
	r := new(rawFlags)
	fs := newFlagSet(r, io.Discard)
	cmdline, err := parseFlags(fs, args, env)
	return r, fs, cmdline, err
}
