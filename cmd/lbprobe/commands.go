package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// subcommand describes one leaf command: its flags and what it does.
type subcommand struct {
	name  string
	args  string // the positional arguments in the usage line: "TARGET"
	short string // one line, in the parent's list
	long  string // paragraphs, in -h
	// noEnv lists flags that the environment does not set: they say what
	// one invocation does (-n, the files certs put uploads).
	noEnv []string
	flags func(fs *flag.FlagSet)
	// exec runs the command with the positional arguments. It returns
	// the exit code, or a usageError for arguments it rejects.
	exec func(ctx context.Context, args []string) (int, error)
	// format is the command's -o, when it has one.
	format *cliutil.Format
}

// alwaysNoEnv are flags the environment never sets: the aliases of
// --output (LBPROBE_OUTPUT sets it) and --config in the file.
var alwaysNoEnv = []string{"o", "json"}

// certsCommands lists the certs subcommands for usage messages.
const certsCommands = "list, verify, put, reseal, sign, revoke or unrevoke"

// commandTree builds the ffcli command tree.
func (a *app) commandTree() *ffcli.Command {
	rootFS := newFlagSet("lbprobe")
	rootFS.BoolVar(&a.showVersion, "version", false, "print the version and exit")
	root := &ffcli.Command{
		Name:       "lbprobe",
		ShortUsage: "lbprobe COMMAND [flags] ARGS",
		ShortHelp:  "diagnose the endpoints of a smartroute service",
		FlagSet:    rootFS,
		Exec: func(_ context.Context, args []string) error {
			if a.showVersion && len(args) == 0 {
				fmt.Fprintf(a.stdout, "lbprobe %s\n", cliutil.Version(version))
				return nil
			}
			if len(args) == 0 {
				return usagef("missing command")
			}
			return usagef("unknown command %q", args[0])
		},
	}
	a.paths[root] = "lbprobe"

	certs := &ffcli.Command{
		Name:       "certs",
		ShortUsage: "lbprobe certs list|verify|put|reseal|sign|revoke|unrevoke [flags] ARGS",
		ShortHelp:  "show, verify, upload and revoke the mTLS identities stored in etcd under /certs",
		FlagSet:    newFlagSet("certs"),
		Exec: func(_ context.Context, args []string) error {
			if len(args) == 0 {
				return usagef("missing certs command: %s", certsCommands)
			}
			return usagef("unknown certs command %q: want %s", args[0], certsCommands)
		},
	}
	a.paths[certs] = "lbprobe certs"
	cc := &certsCmd{app: a}
	certs.Subcommands = []*ffcli.Command{
		a.build("lbprobe certs", cc.listSpec()),
		a.build("lbprobe certs", cc.verifySpec()),
		a.build("lbprobe certs", cc.putSpec()),
		a.build("lbprobe certs", cc.resealSpec()),
		a.build("lbprobe certs", cc.signSpec()),
		a.build("lbprobe certs", cc.revokeSpec()),
		a.build("lbprobe certs", cc.unrevokeSpec()),
	}

	etcd := &ffcli.Command{
		Name:       "etcd",
		ShortUsage: "lbprobe etcd roles [flags]",
		ShortHelp:  "set up etcd for smartroute: least-privilege roles",
		FlagSet:    newFlagSet("etcd"),
		Exec: func(_ context.Context, args []string) error {
			if len(args) == 0 {
				return usagef("missing etcd command: roles")
			}
			return usagef("unknown etcd command %q: want roles", args[0])
		},
	}
	a.paths[etcd] = "lbprobe etcd"
	etcd.Subcommands = []*ffcli.Command{a.build("lbprobe etcd", (&rolesCmd{app: a}).spec())}

	root.Subcommands = []*ffcli.Command{
		a.build("lbprobe", (&endpointsCmd{app: a}).spec()),
		a.build("lbprobe", (&watchCmd{app: a}).spec()),
		a.build("lbprobe", (&pickCmd{app: a}).spec()),
		certs,
		etcd,
	}
	return root
}

// newFlagSet returns a flag set that reports errors to its caller and
// prints nothing itself.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// build turns a subcommand into an ffcli command under parent.
func (a *app) build(parent string, s subcommand) *ffcli.Command {
	fs := newFlagSet(s.name)
	s.flags(fs)
	configFile := ""
	fs.StringVar(&configFile, "config", "", "config file: one flag name and value per line, # comments; lines for flags of other commands are skipped")
	usage := parent + " " + s.name + " [flags]"
	if s.args != "" {
		usage += " " + s.args
	}
	cmd := &ffcli.Command{
		Name:       s.name,
		ShortUsage: usage,
		ShortHelp:  s.short,
		LongHelp:   s.long,
		FlagSet:    fs,
	}
	a.paths[cmd] = parent + " " + s.name
	a.noEnv[cmd] = s.noEnv
	cmd.Exec = func(ctx context.Context, rest []string) error {
		args, err := parseRest(fs, a.subArgs, rest)
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if err != nil {
			return usageError{cleanFlagError(err)}
		}
		skip := slices.Concat(s.noEnv, alwaysNoEnv)
		for _, w := range cliutil.LegacyEnvWarnings(fs, envPrefix, a.env, skip) {
			fmt.Fprintf(a.stderr, "lbprobe: warning: %s\n", w)
		}
		if err := cliutil.ApplyEnv(fs, envPrefix, a.env, skip); err != nil {
			return usageError{errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))}
		}
		if configFile != "" {
			if err := cliutil.ApplyConfigFile(fs, configFile, a.knownFlag, append([]string{"config"}, skip...)); err != nil {
				return usageError{err}
			}
		}
		if s.format != nil {
			a.format = *s.format
		}
		code, err := s.exec(ctx, args)
		if err != nil {
			return err
		}
		a.code = code
		return nil
	}
	return cmd
}

// parseRest parses the flags that follow positional arguments, so that
// "lbprobe pick etcd:///api -n 1000" works as well as "lbprobe pick -n
// 1000 etcd:///api". all is what followed the command's name; rest is what
// the first pass (ffcli's) left. A "--" ends the flags: everything after
// it is positional.
func parseRest(fs *flag.FlagSet, all, rest []string) ([]string, error) {
	var args []string
	if stoppedAtDashes(all, rest) {
		return rest, nil
	}
	for len(rest) > 0 {
		args = append(args, rest[0])
		tail := rest[1:]
		if err := fs.Parse(tail); err != nil {
			return nil, err
		}
		rest = fs.Args()
		if stoppedAtDashes(tail, rest) {
			return append(args, rest...), nil
		}
	}
	return args, nil
}

// stoppedAtDashes reports whether a flag pass over parsed, which left
// left, stopped at a "--".
func stoppedAtDashes(parsed, left []string) bool {
	used := len(parsed) - len(left)
	return used > 0 && used <= len(parsed) && parsed[used-1] == "--"
}

// envName returns the environment variable of a flag: LBPROBE_ETCD_ENDPOINTS
// for --etcd-endpoints.
func envName(flagName string) string { return cliutil.EnvName(envPrefix, flagName) }

// knownFlag reports whether any lbprobe command has the flag name, so that
// one config file can serve every command.
func (a *app) knownFlag(name string) bool {
	for cmd := range a.paths {
		if cmd.FlagSet != nil && cmd.FlagSet.Lookup(name) != nil {
			return true
		}
	}
	return false
}

// usageText is the -h output of cmd.
func (a *app) usageText(cmd *ffcli.Command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n", cmd.ShortUsage)
	if cmd.ShortHelp != "" {
		fmt.Fprintf(&b, "%s%s.\n\n", strings.ToUpper(cmd.ShortHelp[:1]), cmd.ShortHelp[1:])
	}
	if cmd.LongHelp != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(cmd.LongHelp))
	}
	if len(cmd.Subcommands) > 0 {
		b.WriteString("Commands:\n")
		for _, sub := range cmd.Subcommands {
			fmt.Fprintf(&b, "  %-10s %s\n", sub.Name, sub.ShortHelp)
		}
		b.WriteString("\n")
		if cmd.Name == "lbprobe" {
			b.WriteString(rootHelp)
		}
		fmt.Fprintf(&b, "Run '%s COMMAND -h' for the flags of a command.\n", a.paths[cmd])
		return b.String()
	}
	noEnv := slices.Concat(a.noEnv[cmd], alwaysNoEnv)
	b.WriteString("Flags (a flag not given is read from the environment variable shown, then from --config):\n")
	cmd.FlagSet.VisitAll(func(f *flag.Flag) {
		name, usage := valueName(f), f.Usage
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		fmt.Fprintf(&b, "  %s%s", dash, f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n      %s", usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		}
		if !slices.Contains(noEnv, f.Name) {
			fmt.Fprintf(&b, " [$%s]", envName(f.Name))
		}
		b.WriteString("\n")
	})
	b.WriteString("\n" + cliutil.ExitCodesHelp)
	return b.String()
}

// valueName names the value a flag takes, for the help: "" for booleans.
func valueName(f *flag.Flag) string {
	switch v := f.Value.(type) {
	case *durationValue:
		return "duration"
	case *intValue:
		return "int"
	case *listValue:
		return "list"
	case *cliutil.Format:
		return "format"
	case interface{ IsBoolFlag() bool }:
		if v.IsBoolFlag() {
			return ""
		}
	}
	switch {
	case f.Name == "kek":
		return "ID=file:PATH"
	case f.Name == "config" || strings.HasSuffix(f.Name, "-file") || strings.HasSuffix(f.Name, "cacert") ||
		strings.HasSuffix(f.Name, "-cert") || strings.HasSuffix(f.Name, "-key") ||
		slices.Contains([]string{"cert", "key", "ca", "ca-signature", "trust-anchors", "ca-signers"}, f.Name):
		return "file"
	}
	return "string"
}

const rootHelp = `Targets:
  etcd:///api                            instances registered under /services/api/
  dns:///api.example.com:443             A and AAAA records, port 443
  dns://10.0.0.53/api.example.com:443    the same, asking the name server 10.0.0.53
  dns+srv:///_api._tcp.example.com       SRV records and their targets
  static:///10.0.0.1:443,10.0.0.2:443    a fixed list

Flags:
  --version  print the version and exit

` + cliutil.ExitCodesHelp + `
`
