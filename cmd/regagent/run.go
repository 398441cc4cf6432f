package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a runtime failure, e.g. --listen is taken
	exitUsage = 2 // a bad flag, environment variable or config file
)

// run is the whole program but for signal handling: it parses args (and
// the environment through env, and the --config file), then runs the agent
// until ctx ends, drains and deregisters. It returns the exit code.
func run(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	usageErr := func(err error) int {
		// One line per problem: validation reports them all at once.
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "regagent: %s\n", line)
		}
		fmt.Fprintln(stderr, "Run 'regagent -h' for usage.")
		return exitUsage
	}
	r, fs, err := parseArgs(args, env)
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
	cfg, err := r.validate()
	if err != nil {
		return usageErr(err)
	}
	a, err := newAgent(cfg, newLogger(cfg, stderr))
	if err != nil {
		return usageErr(err)
	}
	return a.run(ctx)
}

// parseArgs parses the flags from args, env and the config file.
func parseArgs(args []string, env lookupEnv) (*rawFlags, *flag.FlagSet, error) {
	r := new(rawFlags)
	fs := newFlagSet(r, io.Discard)
	return r, fs, parseFlags(fs, args, env)
}

// newLogger returns the logger --log-format and --log-level ask for.
func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
