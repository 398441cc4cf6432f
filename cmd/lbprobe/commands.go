package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
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
}

// certsCommands lists the certs subcommands for usage messages.
const certsCommands = "list, verify, put, reseal, sign, revoke or unrevoke"

// commandTree builds the ffcli command tree.
func (a *app) commandTree() *ffcli.Command {
	root := &ffcli.Command{
		Name:       "lbprobe",
		ShortUsage: "lbprobe COMMAND [flags] ARGS",
		ShortHelp:  "diagnose the endpoints of a smartroute service",
		FlagSet:    newFlagSet("lbprobe"),
		Exec: func(_ context.Context, args []string) error {
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
		if err := applyEnv(fs, s.noEnv, os.LookupEnv); err != nil {
			return usageError{err}
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

// envName returns the environment variable of a flag: SMARTROUTE_ETCD_ENDPOINTS
// for --etcd-endpoints.
func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag that the command line left unset, and that is
// not in noEnv, from its environment variable, if that is set and not
// empty. The command line wins over the environment.
func applyEnv(fs *flag.FlagSet, noEnv []string, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || slices.Contains(noEnv, f.Name) {
			return
		}
		key := envName(f.Name)
		v, ok := lookup(key)
		if !ok || v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid value %q for %s (--%s): %v", v, key, f.Name, serr)
		}
	})
	return err
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
	noEnv := a.noEnv[cmd]
	b.WriteString("Flags (a flag not given is read from the environment variable shown):\n")
	cmd.FlagSet.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		switch f.Value.(type) {
		case *durationValue:
			name = "duration"
		case *intValue:
			name = "int"
		case *listValue:
			name = "list"
		}
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
	b.WriteString("\n" + exitCodesHelp)
	return b.String()
}

const rootHelp = `Targets:
  etcd:///api                            instances registered under /services/api/
  dns:///api.example.com:443             A and AAAA records, port 443
  dns://10.0.0.53/api.example.com:443    the same, asking the name server 10.0.0.53
  dns+srv:///_api._tcp.example.com       SRV records and their targets
  static:///10.0.0.1:443,10.0.0.2:443    a fixed list

` + exitCodesHelp + `
`

const exitCodesHelp = `Exit codes:
  0   every endpoint healthy / every identity valid / done
  1   some endpoints unhealthy / some identities invalid
  2   no endpoint healthy, the target could not be resolved (etcd unreachable,
      no such name, no instances), no identity valid, or a write refused
  64  usage error: a bad flag, argument, environment variable or target
`
