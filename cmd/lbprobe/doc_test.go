package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// TestGoDocMatchesHelp checks that go doc (the package documentation in
// doc.go) names every flag that some command's -h prints and no other,
// and carries the exit codes -h prints; README's lbprobe section names
// the etcd and output flags.
func TestGoDocMatchesHelp(t *testing.T) {
	doc, err := cliutil.PackageDoc("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, paths: map[*ffcli.Command]string{}, noEnv: map[*ffcli.Command][]string{}}
	a.commandTree()
	var sets []*flag.FlagSet
	for cmd, path := range a.paths {
		sets = append(sets, cmd.FlagSet)
		if len(cmd.Subcommands) > 0 && cmd.Name != "lbprobe" {
			continue // a list of commands
		}
		var out bytes.Buffer
		if code := run(context.Background(), append(strings.Fields(path)[1:], "-h"), &out, io.Discard); code != 0 ||
			!strings.Contains(out.String(), cliutil.ExitCodesHelp) || strings.Contains(out.String(), "`") {
			t.Errorf("%s -h: exit %d, the exit codes missing or stray backquotes:\n%s", path, code, out.String())
		}
	}
	for _, m := range cliutil.DocMismatches(doc, sets, "trusted-ca-file", "cert-file", "key-file", "prefix", "listen") {
		t.Error(m)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--etcd-password-file", "-o table|wide|json", "LBPROBE_", "--config", "lbprobe\n--version", "exits 3"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README lacks %q", want)
		}
	}
	if m := cliutil.ExitCodeMismatches(string(readme)); len(m) > 0 {
		t.Errorf("README: %v", m)
	}
}
