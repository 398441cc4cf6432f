package cliutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/cliflag"
)

func TestEtcdFlagsRefuseCredentialsInURLsWithoutRepeatingThem(t *testing.T) {
	for _, ep := range []string{"http://root:s3cret@127.0.0.1:2379", "root:s3cret@127.0.0.1:2379", "https://root:s3cret@etcd:2379"} {
		_, err := (&EtcdFlags{Endpoints: []string{ep}, DialTimeout: Duration(time.Second)}).Config()
		if err == nil || !strings.Contains(err.Error(), "carries credentials") || !strings.Contains(err.Error(), "--etcd-password-file") {
			t.Errorf("%s: %v, want a refusal naming the fix", ep, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error repeats the password: %v", ep, err)
		}
	}
}

// Duration is cliflag.Duration for the tests' literals.
type Duration = durationAlias

func TestEtcdFlagsPasswordSources(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		f            EtcdFlags
		user, pw     string
		errLike      string
		warningsLike string
	}{
		{name: "file", f: EtcdFlags{User: "root", PasswordFile: pwFile}, user: "root", pw: "s3cret"},
		{name: "user:password", f: EtcdFlags{User: "root:pw"}, user: "root", pw: "pw", warningsLike: "shows the password in ps"},
		{name: "flag", f: EtcdFlags{User: "root", Password: "pw"}, user: "root", pw: "pw", warningsLike: "--etcd-password on the command line"},
		{name: "user without password", f: EtcdFlags{User: "root"}, errLike: "--etcd-user root has no password: give --etcd-password-file FILE or $LBPROBE_ETCD_PASSWORD"},
		{name: "password without user", f: EtcdFlags{Password: "pw"}, errLike: "--etcd-user is not"},
		{name: "both", f: EtcdFlags{User: "root", Password: "pw", PasswordFile: pwFile}, errLike: "give one"},
		{name: "missing file", f: EtcdFlags{User: "root", PasswordFile: filepath.Join(dir, "nope")}, errLike: "--etcd-password-file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			f.envPrefix = "LBPROBE"
			f.Endpoints = []string{"127.0.0.1:2379"}
			f.DialTimeout = Duration(time.Second)
			cfg, err := f.Config()
			if tc.errLike != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("error %v, want %q", err, tc.errLike)
				}
				return
			}
			if err != nil || cfg.Username != tc.user || cfg.Password != tc.pw {
				t.Fatalf("user %q password %q err %v", cfg.Username, cfg.Password, err)
			}
			ws := strings.Join(f.Warnings(map[string]bool{"etcd-user": true, "etcd-password": f.Password != ""}), "\n")
			if tc.warningsLike != "" && !strings.Contains(ws, tc.warningsLike) || tc.warningsLike == "" && ws != "" {
				t.Errorf("warnings %q, want %q", ws, tc.warningsLike)
			}
		})
	}
}

func TestEtcdFlagsOneRuleForSchemes(t *testing.T) {
	for _, tc := range []struct {
		f       EtcdFlags
		want    string
		errLike string
	}{
		{f: EtcdFlags{Endpoints: []string{"127.0.0.1:2379"}}, want: "http://127.0.0.1:2379"},
		{f: EtcdFlags{Endpoints: []string{"http://127.0.0.1:2379"}, CAFile: "ca.pem"}, errLike: "is http:// but --etcd-cacert or --etcd-cert turns on TLS: use https://"},
		{f: EtcdFlags{Endpoints: []string{"http://a:1", "https://b:1"}}, errLike: "mixes http:// and https://"},
		{f: EtcdFlags{Endpoints: []string{"ftp://a:1"}}, errLike: `scheme "ftp"`},
		{f: EtcdFlags{Endpoints: []string{"etcd"}}, errLike: `"etcd" is not host:port or a URL`},
	} {
		f := tc.f
		f.DialTimeout = Duration(time.Second)
		cfg, err := f.Config()
		switch {
		case tc.errLike != "" && (err == nil || !strings.Contains(err.Error(), tc.errLike)):
			t.Errorf("%v: error %v, want %q", tc.f.Endpoints, err, tc.errLike)
		case tc.errLike == "" && (err != nil || cfg.Endpoints[0] != tc.want):
			t.Errorf("%v: %v %v, want %s", tc.f.Endpoints, cfg.Endpoints, err, tc.want)
		}
	}
}

func TestFormatFlagsAndTheirAlias(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Format
	}{
		{nil, Table},
		{[]string{"-o", "json"}, JSON},
		{[]string{"--output=wide"}, Wide},
		{[]string{"--json"}, JSON},
		{[]string{"--json", "-o", "table"}, Table},
	} {
		var f Format
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		RegisterFormat(fs, &f)
		if err := fs.Parse(tc.args); err != nil || f != tc.want {
			t.Errorf("%v: %v %v, want %v", tc.args, f, err, tc.want)
		}
		if got := FormatInArgs(tc.args); got != tc.want {
			t.Errorf("FormatInArgs(%v) = %v, want %v", tc.args, got, tc.want)
		}
	}
	var f Format
	if err := f.Set("yaml"); err == nil {
		t.Error("-o yaml accepted")
	}
}

func TestWriteErrorNamesTheCause(t *testing.T) {
	var b bytes.Buffer
	err := &EtcdError{Cause: CauseUnreachable, Msg: "etcd unreachable", Fix: "check"}
	if werr := WriteError(&b, errors.Join(err), ExitEtcd); werr != nil {
		t.Fatal(werr)
	}
	var doc ErrorDoc
	if jerr := json.Unmarshal(b.Bytes(), &doc); jerr != nil || doc.Cause != CauseUnreachable || doc.ExitCode != 3 || doc.Error != "etcd unreachable; check" {
		t.Errorf("%s: %+v %v", b.String(), doc, jerr)
	}
}

type health int

func (h health) String() string { return [...]string{"unknown", "healthy"}[h] }

func TestJSONLogsWriteDurationsAndStatesAsText(t *testing.T) {
	var b bytes.Buffer
	log := NewLogger(&b, "json", slog.LevelInfo)
	log.Info("x", "ttl", 5*time.Second, "rtt", slog.DurationValue(170*time.Microsecond), "from", health(0), "to", health(1), "err", errors.New("boom"))
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"ttl": "5s", "rtt": "170µs", "from": "unknown", "to": "healthy", "err": "boom"} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %q (%s)", k, rec[k], want, b.String())
		}
	}
}

func TestApplyEnvAndConfigFileOrder(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("check", "http", "")
	b := fs.String("count", "5", "")
	c := fs.String("policy", "p", "")
	v := fs.Bool("version", false, "")
	if err := fs.Parse([]string{"--check", "tcp"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LBPROBE_CHECK": "grpc", "LBPROBE_COUNT": "3", "LBPROBE_VERSION": "true", "SMARTROUTE_POLICY": "x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := ApplyEnv(fs, "LBPROBE", lookup, []string{"version"}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(conf, []byte("# comment\ncheck tls\ncount 9\npolicy round_robin\nrise 3\n"), 0o600)
	if err := ApplyConfigFile(fs, conf, func(n string) bool { return n == "rise" }, []string{"version"}); err != nil {
		t.Fatal(err)
	}
	if *a != "tcp" || *b != "3" || *c != "round_robin" || *v {
		t.Errorf("check %s count %s policy %s version %v: want the command line, then the environment, then the file; never --version from the environment", *a, *b, *c, *v)
	}
	if w := LegacyEnvWarnings(fs, "LBPROBE", lookup, nil); len(w) != 1 || !strings.Contains(w[0], "SMARTROUTE_POLICY is no longer read: set LBPROBE_POLICY") {
		t.Errorf("warnings %q", w)
	}
	os.WriteFile(conf, []byte("bogus 1\n"), 0o600)
	if err := ApplyConfigFile(fs, conf, nil, nil); err == nil || !strings.Contains(err.Error(), "line 1: no flag --bogus") {
		t.Errorf("error %v", err)
	}
	os.WriteFile(conf, []byte("\nversion true\n"), 0o600)
	if err := ApplyConfigFile(fs, conf, nil, []string{"version"}); err == nil || !strings.Contains(err.Error(), "line 2: --version cannot be set in a config file") {
		t.Errorf("error %v", err)
	}
}

type durationAlias = cliflag.Duration
