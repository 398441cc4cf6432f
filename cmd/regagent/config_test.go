package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/registry"
)

// envMap is a lookupEnv over a map.
func envMap(m map[string]string) lookupEnv {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadConfig parses and validates as run does.
func loadConfig(t *testing.T, args []string, env map[string]string) (*config, error) {
	t.Helper()
	r, _, _, err := parseArgs(args, envMap(env))
	if err != nil {
		return nil, err
	}
	return r.validate()
}

// runCLI runs the agent with a context that is already cancelled: a bad
// configuration returns before the context matters.
func runCLI(t *testing.T, args []string, env map[string]string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, envMap(env), &out, &errb)
	return code, out.String(), errb.String()
}

func TestFlagsWinOverEnvironmentWhichWinsOverConfigFile(t *testing.T) {
	file := writeFile(t, "regagent.conf", `
# every field set in the file
service file-svc
addr 127.0.0.1:1001
zone file-zone
weight 3
instance-version file-v
label a=file
ttl 30s
check-interval 3s
`)
	env := map[string]string{
		"REGAGENT_CONFIG":           file, // the file itself may come from the environment
		"REGAGENT_ZONE":             "env-zone",
		"REGAGENT_WEIGHT":           "4",
		"REGAGENT_LABEL":            "b=env,c=env",
		"REGAGENT_INSTANCE_VERSION": "", // empty means unset, as in ff
		"REGAGENT_CHECK_INTERVAL":   "2s",
	}
	cfg, err := loadConfig(t, []string{"--weight", "5", "--check-interval=1s", "--listen", ""}, env)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.instance
	want := registry.Instance{
		Service: "file-svc", // only in the file
		Addr:    "127.0.0.1:1001",
		Zone:    "env-zone",                                // env over file
		Weight:  5,                                         // flag over env over file
		Version: "file-v",                                  // empty env var does not hide the file
		Labels:  map[string]string{"b": "env", "c": "env"}, // env replaces the file's labels
	}
	if got.Service != want.Service || got.Addr != want.Addr || got.Zone != want.Zone ||
		got.Weight != want.Weight || got.Version != want.Version || !maps.Equal(got.Labels, want.Labels) {
		t.Errorf("instance = %+v, want %+v", got, want)
	}
	if cfg.ttl != 30*time.Second {
		t.Errorf("ttl = %v, want 30s from the file", cfg.ttl)
	}
	if cfg.check.interval != time.Second {
		t.Errorf("check interval = %v, want 1s from the flag", cfg.check.interval)
	}
	if cfg.listen != "" {
		t.Errorf("listen = %q, want the empty value given on the command line", cfg.listen)
	}
}

func TestRepeatedLabelFlagsAccumulate(t *testing.T) {
	file := writeFile(t, "c.conf", "label x=1\nlabel y=2\n")
	cfg, err := loadConfig(t, []string{"--service", "s", "--addr", "h:1", "--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"x": "1", "y": "2"}; !maps.Equal(cfg.instance.Labels, want) {
		t.Errorf("labels from file = %v, want %v", cfg.instance.Labels, want)
	}
	cfg, err = loadConfig(t, []string{"--service", "s", "--addr", "h:1", "--config", file,
		"--label", "canary=true", "--label", "team=a,tier=web", "--label", "canary=false"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"canary": "false", "team": "a", "tier": "web"}; !maps.Equal(cfg.instance.Labels, want) {
		t.Errorf("labels from flags = %v, want %v (flags replace the file's, later wins)", cfg.instance.Labels, want)
	}
}

func TestSampleConfigFileIsValid(t *testing.T) {
	cfg, err := loadConfig(t, []string{"--config", "testdata/regagent.conf"}, nil)
	if err != nil {
		t.Fatalf("testdata/regagent.conf: %v", err)
	}
	if cfg.instance.Service != "api" || cfg.check.kind != "http" || cfg.check.addr != "127.0.0.1:8080" ||
		cfg.check.path != "/healthz" || cfg.instance.Labels["team"] != "payments" || cfg.logFormat != "json" {
		t.Errorf("sample config read as %+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := loadConfig(t, []string{"--service", "api", "--addr", "10.0.0.1:8080"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.check.kind != "tcp" || cfg.check.addr != "10.0.0.1:8080" || cfg.check.rise != 2 || cfg.check.fall != 3 ||
		cfg.check.interval != 5*time.Second || cfg.check.timeout != time.Second {
		t.Errorf("check defaults = %+v", cfg.check)
	}
	if cfg.ttl != registry.DefaultTTL || cfg.drainPeriod != defaultDrainPeriod || cfg.listen != defaultListen ||
		cfg.etcd.endpoints[0] != "http://"+defaultEndpoints || cfg.etcd.prefix != registry.DefaultPrefix || cfg.instance.Weight != 1 {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestListenOffFromEnvironmentOrFile(t *testing.T) {
	file := writeFile(t, "c.conf", "service api\naddr h:1\nlisten off\n")
	for _, tt := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--config", file}, nil},
		{[]string{"--service", "api", "--addr", "h:1"}, map[string]string{"REGAGENT_LISTEN": "off"}},
		{[]string{"--service", "api", "--addr", "h:1", "--listen="}, nil},
	} {
		cfg, err := loadConfig(t, tt.args, tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.listen != "" {
			t.Errorf("%v %v: listen = %q, want off", tt.args, tt.env, cfg.listen)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	tests := []struct {
		args       []string
		addr, path string
		tls        bool
	}{
		{[]string{"--check", "http"}, "10.0.0.1:8080", "/", false},
		{[]string{"--check", "https"}, "10.0.0.1:8080", "/", true},
		{[]string{"--check", "http", "--check-target", "http://127.0.0.1:9000/healthz?full=1"}, "127.0.0.1:9000", "/healthz?full=1", false},
		{[]string{"--check", "http", "--check-target", "http://localhost/ready"}, "localhost:80", "/ready", false},
		{[]string{"--check", "https", "--check-target", "https://[::1]/"}, "[::1]:443", "/", true},
		{[]string{"--check", "grpc", "--check-target", "127.0.0.1:9001"}, "127.0.0.1:9001", "", false},
		{[]string{"--check", "grpc", "--check-tls"}, "10.0.0.1:8080", "", true},
		{[]string{"--check", "tls", "--check-server-name", "api.internal"}, "10.0.0.1:8080", "", true},
		{[]string{"--check", "tcp", "--check-target", "127.0.0.1:22"}, "127.0.0.1:22", "", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cfg, err := loadConfig(t, append([]string{"--service", "api", "--addr", "10.0.0.1:8080"}, tt.args...), nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.check.addr != tt.addr || cfg.check.path != tt.path || cfg.check.useTLS != tt.tls {
				t.Errorf("check = addr %q path %q tls %v, want %q %q %v", cfg.check.addr, cfg.check.path, cfg.check.useTLS, tt.addr, tt.path, tt.tls)
			}
		})
	}
}

func TestBadConfigurationExits2NamingTheProblem(t *testing.T) {
	base := []string{"--service", "api", "--addr", "127.0.0.1:8080", "--listen", ""}
	badFile := writeFile(t, "bad.conf", "service api\naddr 127.0.0.1:8080\n\nweight lots\n")
	unknownFile := writeFile(t, "unknown.conf", "# comment\nservise api\n")
	dir := t.TempDir()
	notPEM := writeFile(t, "not.pem", "not a certificate")
	ca := certgen.NewCA(t, "ca")
	certFile, keyFile, _ := certgen.WriteFiles(t, dir, "client", ca, ca.Client(t, "client"))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "flag provided but not defined: --bogus"},
		{"positional argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"missing service", []string{"--addr", "127.0.0.1:1"}, nil, "--service is required"},
		{"missing addr", []string{"--service", "api"}, nil, "--addr is required"},
		{"addr without port", []string{"--addr", "127.0.0.1"}, nil, `--addr: "127.0.0.1" is not host:port`},
		{"addr port zero", []string{"--addr", "127.0.0.1:0"}, nil, `port "0" is not a number from 1 to 65535`},
		{"addr port too big", []string{"--addr", "127.0.0.1:70000"}, nil, `port "70000" is not a number from 1 to 65535`},
		{"service with slash", []string{"--service", "a/b"}, nil, `service "a/b" contains '/'`},
		{"weight zero", []string{"--weight", "0"}, nil, "--weight 0 is out of range 1..10000"},
		{"weight too big", []string{"--weight", "10001"}, nil, "--weight 10001 is out of range 1..10000"},
		{"weight not a number", []string{"--weight", "heavy"}, nil, `invalid value "heavy" for --weight: "heavy" is not a whole number`},
		{"bad duration", []string{"--check-interval", "5 seconds"}, nil, `invalid value "5 seconds" for --check-interval: time: unknown unit " seconds" in duration "5 seconds" (use Go syntax such as 500ms, 10s, 1m)`},
		{"negative interval", []string{"--check-interval", "-1s"}, nil, "--check-interval -1s must be positive"},
		{"timeout over interval", []string{"--check-interval", "1s", "--check-timeout", "2s"}, nil, "--check-timeout 2s is longer than --check-interval 1s"},
		{"ttl too short", []string{"--ttl", "500ms"}, nil, "--ttl 500ms is under the 1s minimum"},
		{"negative drain", []string{"--drain-period", "-1s"}, nil, "--drain-period -1s is negative"},
		{"rise zero", []string{"--rise", "0"}, nil, "--rise 0 is out of range 1..100"},
		{"fall too big", []string{"--fall", "1000"}, nil, "--fall 1000 is out of range 1..100"},
		{"unknown check", []string{"--check", "icmp"}, nil, `--check "icmp" is not one of http, https, tcp, grpc, tls`},
		{"url for tcp", []string{"--check", "tcp", "--check-target", "http://127.0.0.1:1/"}, nil, "--check tcp takes host:port, not a URL"},
		{"scheme mismatch", []string{"--check", "https", "--check-target", "http://127.0.0.1:1/"}, nil, `scheme "http" does not match --check https`},
		{"bad check target", []string{"--check", "grpc", "--check-target", "nohost"}, nil, `--check-target: "nohost" is not host:port`},
		{"check-tls on http", []string{"--check", "http", "--check-tls"}, nil, "--check-tls is for --check grpc"},
		{"tls flags on tcp check", []string{"--check", "tcp", "--check-cacert", "x.pem"}, nil, "need a TLS check"},
		{"grpc service on tcp", []string{"--check-grpc-service", "x"}, nil, "--check-grpc-service needs --check grpc"},
		{"check cert without key", []string{"--check", "https", "--check-cert", "c.pem"}, nil, "--check-cert and --check-key go together"},
		{"bad label", []string{"--label", "canary"}, nil, `label "canary" is not key=value`},
		{"empty label key", []string{"--label", "=x"}, nil, `label "=x" has an empty key`},
		{"bad endpoint scheme", []string{"--etcd-endpoints", "ftp://127.0.0.1:2379"}, nil, `scheme "ftp" is not http, https, unix or unixs`},
		{"bad endpoint", []string{"--etcd-endpoints", "127.0.0.1:2379,etcd-1"}, nil, `--etcd-endpoints: "etcd-1" is not host:port or a URL`},
		{"http endpoint with TLS", []string{"--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-cacert", "ca.pem"}, nil, "is http:// but --etcd-cacert or --etcd-cert turns on TLS"},
		{"etcd cert without key", []string{"--etcd-cert", "c.pem"}, nil, "--etcd-cert and --etcd-key go together"},
		{"password without user", []string{"--etcd-password", "secret"}, nil, "an etcd password is set but --etcd-user is not"},
		{"bad dial timeout", []string{"--etcd-dial-timeout", "0s"}, nil, "--etcd-dial-timeout 0s must be positive"},
		{"bad prefix", []string{"--etcd-prefix", "services"}, nil, `--etcd-prefix "services" must start with /`},
		{"bad listen", []string{"--listen", "9469"}, nil, `--listen: "9469" is not host:port`},
		{"bad log format", []string{"--log-format", "xml"}, nil, `--log-format "xml" is not text or json`},
		{"bad log level", []string{"--log-level", "loud"}, nil, `--log-level "loud" is not debug, info, warn or error`},
		{"bad env var", nil, map[string]string{"REGAGENT_WEIGHT": "heavy"}, `invalid value "heavy" for REGAGENT_WEIGHT (--weight)`},
		{"bad env duration", nil, map[string]string{"REGAGENT_TTL": "10"}, `REGAGENT_TTL (--ttl): time: missing unit in duration "10"`},
		{"missing config file", []string{"--config", "/nonexistent/regagent.conf"}, nil, "--config /nonexistent/regagent.conf: open /nonexistent/regagent.conf: no such file or directory"},
		{"config from env missing", nil, map[string]string{"REGAGENT_CONFIG": "/nonexistent/x.conf"}, "--config /nonexistent/x.conf: open"},
		{"bad config line", []string{"--config", badFile}, nil, `line 4: invalid value "lots" for --weight: "lots" is not a whole number`},
		{"unknown config key", []string{"--config", unknownFile}, nil, `line 2: no flag --servise`},
		{"unreadable CA", []string{"--etcd-cacert", "/nonexistent/ca.pem"}, nil, "--etcd-cacert: open /nonexistent/ca.pem"},
		{"CA not PEM", []string{"--etcd-cacert", notPEM}, nil, "no PEM certificate in the file"},
		{"key does not match", []string{"--etcd-cert", certFile, "--etcd-key", notPEM}, nil, "--etcd-cert " + certFile},
		{"check CA unreadable", []string{"--check", "https", "--check-cacert", "/nonexistent/ca.pem"}, nil, "--check-cacert: open /nonexistent/ca.pem"},
		{"check cert bad key", []string{"--check", "tls", "--check-cert", certFile, "--check-key", keyFile + ".missing"}, nil, "--check-cert " + certFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tt.args...)
			if strings.HasPrefix(tt.name, "missing service") || strings.HasPrefix(tt.name, "missing addr") {
				args = append([]string{"--listen", ""}, tt.args...)
			}
			code, stdout, stderr := runCLI(t, args, tt.env)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not name the problem %q:\n%s", tt.want, stderr)
			}
			if !strings.HasPrefix(stderr, "regagent: ") || !strings.Contains(stderr, "regagent -h") {
				t.Errorf("stderr is not a usage error:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	code, _, stderr := runCLI(t, []string{"--weight", "0", "--check", "icmp"}, nil)
	if code != exitUsage {
		t.Fatalf("exit code %d, want 2", code)
	}
	// A bad --addr is reported once, not again as the check target it
	// would have defaulted.
	if _, _, stderr := runCLI(t, []string{"--service", "api", "--addr", "x"}, nil); strings.Count(stderr, "regagent: ") != 1 {
		t.Errorf("a bad --addr gives more than one error:\n%s", stderr)
	}
	for _, want := range []string{"--service is required", "--addr is required", "--weight 0", `--check "icmp"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, []string{"--version"}, nil)
	if code != 0 || !strings.HasPrefix(stdout, "regagent ") || strings.TrimSpace(stdout) == "regagent" || stderr != "" {
		t.Errorf("--version: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, []string{"-h"}, nil)
	if code != 0 {
		t.Errorf("-h: exit code %d, want 0", code)
	}
	for _, flag := range []string{"--etcd-endpoints", "--etcd-cacert", "--etcd-cert", "--etcd-key", "--etcd-user",
		"--etcd-password", "--service", "--id", "--addr", "--zone", "--weight", "--instance-version", "--label",
		"--ttl", "--check ", "--check-target", "--check-interval", "--check-timeout", "--rise", "--fall",
		"--drain-period", "--listen", "--config", "--log-format", "--version", "[$REGAGENT_ETCD_ENDPOINTS]"} {
		if !strings.Contains(stdout, flag) {
			t.Errorf("-h does not document %s", flag)
		}
	}
}

func TestVersionResolution(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		ok            bool
		want          string
	}{
		{"ldflags win", "v9.8.7", bi, true, "v9.8.7"},
		{"checkout build", "", bi, true, "(devel) 0123456789ab-dirty"},
		{"go install @version", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "v1.2.3"},
		{"no build info", "", nil, false, "(unknown)"},
	}
	for _, tt := range tests {
		if got := cliutil.ResolveVersion(tt.ldflags, tt.bi, tt.ok); got != tt.want {
			t.Errorf("%s: version = %q, want %q", tt.name, got, tt.want)
		}
	}
}
