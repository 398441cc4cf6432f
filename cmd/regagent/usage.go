package main

import (
	"flag"
	"fmt"
	"io"
)

// printUsage writes the help text: a synopsis, then every flag with its
// environment variable and default.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: regagent --service NAME --addr HOST:PORT [flags]

regagent registers a service instance in etcd while its local health check
passes, and drains and deregisters it on SIGTERM or SIGINT.

Every flag can also be set by an environment variable (shown) or by a line
"flag value" in the --config file; flags win over the environment, the
environment over the file.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		switch f.Value.(type) {
		case *durationValue:
			name = "duration"
		case *intValue:
			name = "int"
		case *listValue:
			name = "list"
		case labelsValue:
			name = "key=value"
		}
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n    \t%s", usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, " [$%s]\n", envName(f.Name))
	})
}
