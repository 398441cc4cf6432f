package main

import (
	"strings"
	"testing"

	"github.com/smartroute/smartroute/internal/etcdtest"
)

func TestBadInputIsAUsageErrorWithOneLineAndTheUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		msg  string // the first line of stderr, after "lbprobe <cmd>: "
	}{
		{args: nil, msg: "lbprobe: missing command"},
		{args: []string{"frobnicate"}, msg: `lbprobe: unknown command "frobnicate"`},
		{args: []string{"certs"}, msg: "lbprobe certs: missing certs command: list, verify, put, reseal, sign, revoke or unrevoke"},
		{args: []string{"certs", "rm"}, msg: `lbprobe certs: unknown certs command "rm": want list, verify, put, reseal, sign, revoke or unrevoke`},
		{args: []string{"endpoints"}, msg: "lbprobe endpoints: missing TARGET (e.g. etcd:///api, dns:///api.example.com:443)"},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "static:///127.0.0.1:2"}, msg: "lbprobe endpoints: one TARGET only"},
		{args: []string{"endpoints", "--bogus", "static:///127.0.0.1:1"}, msg: "lbprobe endpoints: flag provided but not defined: --bogus"},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--bogus"}, msg: "lbprobe endpoints: flag provided but not defined: --bogus"},
		{args: []string{"endpoints", "consul:///api"}, msg: `lbprobe endpoints: target "consul:///api": scheme "consul" is not etcd, dns, dns+srv or static: unknown scheme`},
		{args: []string{"endpoints", "api.example.com"}, msg: `lbprobe endpoints: target "api.example.com"`},
		{args: []string{"endpoints", "static:///10.0.0.1"}, msg: `lbprobe endpoints: target "static:///10.0.0.1"`},
		{args: []string{"endpoints", "dns:///api.example.com"}, msg: `lbprobe endpoints: target "dns:///api.example.com"`},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--check", "icmp"}, msg: `lbprobe endpoints: --check "icmp": want one of tcp, http, https, grpc, tls`},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--policy", "fastest"}, msg: "lbprobe endpoints: --policy: "},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--count", "0"}, msg: "lbprobe endpoints: --count 0: want 1 to 10000"},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--count", "many"}, msg: `lbprobe endpoints: invalid value "many" for --count: "many" is not a whole number`},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--timeout", "5"}, msg: `lbprobe endpoints: invalid value "5" for --timeout: time: missing unit in duration "5" (use Go syntax such as 500ms, 10s, 1m)`},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--check-cacert", "/nonexistent/ca.pem"}, msg: "lbprobe endpoints: --check-cacert: open /nonexistent/ca.pem: no such file or directory"},
		{args: []string{"endpoints", "static:///127.0.0.1:1", "--check-cert", "x.pem"}, msg: "lbprobe endpoints: --check-cert and --check-key go together"},
		{args: []string{"endpoints", "etcd:///api", "--etcd-cert", "c.pem"}, msg: "lbprobe endpoints: --etcd-cert and --etcd-key go together"},
		{args: []string{"endpoints", "etcd:///api", "--etcd-endpoints", "ftp://x:1"}, msg: `lbprobe endpoints: --etcd-endpoints: "ftp://x:1": scheme "ftp" is not http, https, unix or unixs`},
		{args: []string{"endpoints", "static:///127.0.0.1:1"}, env: map[string]string{"LBPROBE_COUNT": "lots"}, msg: `lbprobe endpoints: invalid value "lots" for LBPROBE_COUNT (--count)`},
		{args: []string{"pick", "static:///127.0.0.1:1", "-n", "0"}, msg: "lbprobe pick: -n 0: want 1 to 10000000"},
		{args: []string{"pick", "static:///127.0.0.1:1", "-n", "x"}, msg: `lbprobe pick: invalid value "x" for -n: "x" is not a whole number`},
		{args: []string{"watch", "static:///127.0.0.1:1", "--rise", "0"}, msg: "lbprobe watch: --rise and --fall: want 1 to 100"},
		{args: []string{"watch"}, msg: "lbprobe watch: want one TARGET, got 0 arguments"},
		{args: []string{"certs", "list", "extra"}, msg: `lbprobe certs list: list takes no arguments`},
		{args: []string{"certs", "verify", "web"}, msg: "lbprobe certs verify: verify opens the private keys: give --kek-file or --kek-env with --kek-id"},
		{args: []string{"certs", "verify", "ca"}, msg: `lbprobe certs verify: identity "ca": `},
		{args: []string{"certs", "put", "web", "--cert", "a.crt"}, msg: "lbprobe certs put: put web needs --cert and --key"},
		{args: []string{"certs", "put"}, msg: "lbprobe certs put: missing NAME (with --cert and --key), or --ca"},
		{args: []string{"certs", "put", "web", "--cert", "a", "--key", "b", "--kek-file", "k"}, msg: "lbprobe certs put: --kek-id is required with --kek-file or --kek-env"},
		{args: []string{"certs", "put", "web", "--cert", "a", "--key", "b"}, msg: "lbprobe certs put: put seals the private key"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			res := lbprobe(t, tc.args...)
			if res.code != exitUsage {
				t.Fatalf("exit code %d, want %d\n%s", res.code, exitUsage, res)
			}
			lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n")
			if !strings.HasPrefix(lines[0], tc.msg) {
				t.Errorf("first line %q, want it to start with %q", lines[0], tc.msg)
			}
			if len(lines) != 3 || !strings.HasPrefix(lines[1], "usage: lbprobe") || !strings.HasPrefix(lines[2], "Run 'lbprobe") {
				t.Errorf("stderr is not the error, the usage line and the hint:\n%s", res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout: %q", res.stdout)
			}
		})
	}
}

func TestHelpListsEveryFlagWithItsEnvironmentVariable(t *testing.T) {
	res := lbprobe(t, "pick", "-h")
	if res.code != exitOK || res.stderr != "" {
		t.Fatalf("%s", res)
	}
	for _, want := range []string{
		"Usage: lbprobe pick [flags] TARGET",
		"--etcd-endpoints list", "[$LBPROBE_ETCD_ENDPOINTS]",
		"--check string", "[$LBPROBE_CHECK]",
		"--count int", "--policy string", "least_latency|p2c|round_robin",
		"--check-server-name string", "--json",
		"  -n int\n      number of picks (default \"1000\")\n",
		"2  usage error", "--config file", "-o format", "--output format",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "LBPROBE_N]") || strings.Contains(res.stdout, "LBPROBE_JSON]") || strings.Contains(res.stdout, "LBPROBE_O]") {
		t.Error("-n, -o or --json is read from the environment")
	}
	if strings.Contains(res.stdout, "`") {
		t.Errorf("stray backquotes in the help:\n%s", res.stdout)
	}
	// -h after the target works too.
	if after := lbprobe(t, "pick", "static:///127.0.0.1:1", "-h"); after.code != exitOK || after.stdout != res.stdout {
		t.Errorf("pick TARGET -h: %s", after)
	}
	root := lbprobe(t, "--help")
	if root.code != exitOK || !strings.Contains(root.stdout, "dns+srv:///_api._tcp.example.com") || !strings.Contains(root.stdout, "  certs ") {
		t.Errorf("root help:\n%s", root)
	}
}

func TestEnvironmentSetsSharedFlagsAndTheCommandLineWins(t *testing.T) {
	b := newFast(t, "b")
	t.Setenv("LBPROBE_COUNT", "3")
	t.Setenv("LBPROBE_CHECK", "tcp")
	t.Setenv("LBPROBE_OUTPUT", "json")
	res := lbprobe(t, "endpoints", "static:///"+b, "--count", "2", "--interval", "1ms")
	if res.code != exitOK {
		t.Fatalf("%s", res)
	}
	rep := decode[endpointsReport](t, res)
	if rep.Count != 2 || rep.Check != "tcp" || rep.Endpoints[0].Checks != 2 {
		t.Errorf("count %d check %s checks %d, want 2 (command line) and tcp (environment)", rep.Count, rep.Check, rep.Endpoints[0].Checks)
	}
}

func TestRuntimeFailuresAreOneLineWithTheirExitCode(t *testing.T) {
	c := etcdtest.Start(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unreachable etcd", []string{"endpoints", "etcd:///api", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "300ms"},
			exitEtcd, "lbprobe: etcd unreachable: no answer from http://127.0.0.1:1 within 300ms (http://127.0.0.1:1: connection refused)"},
		{"no instances", append([]string{"endpoints", "etcd:///nothing-here"}, etcdFlagsFor(c)...),
			exitEtcd, "lbprobe: resolve etcd:///nothing-here: no endpoints"},
		{"certs from unreachable etcd", []string{"certs", "list", "--etcd-endpoints", "127.0.0.1:1", "--etcd-dial-timeout", "300ms"},
			exitEtcd, "lbprobe: etcd unreachable: no answer from http://127.0.0.1:1 within 300ms"},
		{"nothing under /certs", append([]string{"certs", "list"}, etcdFlagsFor(c)...),
			exitNone, "lbprobe: nothing stored under /certs/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := lbprobe(t, tc.args...)
			if res.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", res.code, tc.code, res)
			}
			if !strings.HasPrefix(res.stderr, tc.msg) || strings.Count(res.stderr, "\n") != 1 || res.stdout != "" {
				t.Errorf("want one line starting %q:\n%s", tc.msg, res)
			}
		})
	}
}

// TestBinaryExitCodes runs the program as a process (the test binary
// acting as lbprobe) to check what a shell sees.
func TestBinaryExitCodes(t *testing.T) {
	b := newFast(t, "b")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"endpoints", "static:///" + b, "--count", "1"}, exitOK},
		{[]string{"endpoints", "static:///" + b + ",127.0.0.1:1", "--count", "1"}, exitSome},
		{[]string{"endpoints", "static:///127.0.0.1:1", "--count", "1"}, exitNone},
		{[]string{"endpoints", "bogus:///x"}, exitUsage},
		{[]string{"--bogus"}, exitUsage},
	} {
		if res := lbprobeProcess(t, tc.args...); res.code != tc.code {
			t.Errorf("lbprobe %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), res.code, tc.code, res)
		}
	}
}
