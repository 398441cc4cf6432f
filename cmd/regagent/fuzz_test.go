package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// FuzzConfigFile feeds arbitrary config files through the file parser and
// the validation: whatever the input, they report errors and never panic,
// and a file they accept yields a complete, valid configuration.
func FuzzConfigFile(f *testing.F) {
	sample, err := os.ReadFile("testdata/regagent.conf")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(sample))
	f.Add("service api\naddr 127.0.0.1:1\n")
	f.Add("service api\naddr 127.0.0.1:1\nlabel a=b,c=d\nlabel a=e\n")
	f.Add("--service api # trailing comment\n  addr   [::1]:443  \n")
	f.Add("check http\ncheck-target http://h:1/x?y=z\nservice s\naddr h:1\n")
	f.Add("weight 0\nttl 1\nrise -1\n")
	f.Add("version\n")
	f.Add("\x00\xff\n#\n \n")
	f.Fuzz(func(t *testing.T, file string) {
		r := new(rawFlags)
		fs := newFlagSet(r, io.Discard)
		path := filepath.Join(t.TempDir(), "regagent.conf")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		err := cliutil.ApplyConfigFile(fs, path, nil, append([]string{"config"}, noEnvFlags...))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		cfg, err := r.validate()
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := cfg.instance.Validate(); err != nil {
			t.Fatalf("accepted an invalid instance: %v", err)
		}
		if cfg.check.addr == "" || cfg.check.rise < 1 || cfg.check.fall < 1 || cfg.ttl <= 0 || len(cfg.etcd.endpoints) == 0 {
			t.Fatalf("accepted an incomplete config: %+v", cfg)
		}
	})
}

// FuzzLabels checks that --label parses without panicking and that what it
// accepts prints back to a value that parses to the same labels.
func FuzzLabels(f *testing.F) {
	for _, s := range []string{"canary=true", "a=1,b=2", " a = 1 , ,b=", "k==v", "=x", "novalue", "a=1,a=2", "ünï=cødé"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l := labelsValue{}
		if err := l.Set(s); err != nil {
			return
		}
		again := labelsValue{}
		if err := again.Set(l.String()); err != nil {
			t.Fatalf("String() %q of accepted %q does not parse: %v", l.String(), s, err)
		}
		if !maps.Equal(l, again) {
			t.Fatalf("round trip of %q: %v, then %v", s, l, again)
		}
	})
}
