package main

import (
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// printUsage writes the help text: a synopsis, then every flag with its
// environment variable and default, then the exit codes.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: regagent --service NAME --addr HOST:PORT [flags]

regagent registers a service instance in etcd while its local health check
passes, and drains and deregisters it on SIGTERM or SIGINT. At start-up it
checks within --etcd-dial-timeout that etcd can be reached and the
instance's key written, and says why not (on stderr, /healthz and
smartroute_regagent_register_failures_total); it keeps retrying.

Every flag but --version can also be set by an environment variable
(shown; REGAGENT_ and the flag's name) or by a line "flag value" in the
--config file; flags win over the environment, the environment over the
file.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s", f.Name)
		if name := valueName(f); name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n    \t%s", f.Usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		if !slices.Contains(noEnvFlags, f.Name) {
			fmt.Fprintf(w, " [$%s]", envName(f.Name))
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "\n"+cliutil.ExitCodesHelp)
}

// valueName names the value a flag takes, for the help: "" for booleans.
func valueName(f *flag.Flag) string {
	switch f.Value.(type) {
	case *durationValue:
		return "duration"
	case *intValue:
		return "int"
	case *listValue:
		return "list"
	case labelsValue:
		return "key=value"
	}
	if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
		return ""
	}
	switch f.Name {
	case "config", "etcd-cacert", "etcd-cert", "etcd-key", "etcd-password-file", "check-cacert", "check-cert", "check-key":
		return "file"
	}
	return "string"
}
