package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// TestGoDocMatchesHelp checks that go doc (the package documentation in
// doc.go) names every flag -h prints and no other, and carries the exit
// codes -h prints; and README's regagent section too.
func TestGoDocMatchesHelp(t *testing.T) {
	doc, err := cliutil.PackageDoc("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	fs := newFlagSet(new(rawFlags), io.Discard)
	for _, m := range cliutil.DocMismatches(doc, []*flag.FlagSet{fs}, "cert-file", "key-file", "trusted-ca-file", "help") {
		t.Error(m)
	}
	var help strings.Builder
	printUsage(&help, fs)
	if !strings.Contains(help.String(), cliutil.ExitCodesHelp) || strings.Contains(help.String(), "`") {
		t.Errorf("-h lacks the exit codes or has stray backquotes:\n%s", help.String())
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	if i := strings.Index(section, "## regagent"); i >= 0 {
		section = section[i:]
		if j := strings.Index(section[3:], "\n## "); j >= 0 {
			section = section[:j+3]
		}
	}
	for _, m := range append(cliutil.FlagMismatches(section, []*flag.FlagSet{fs}, "cert-file", "key-file", "trusted-ca-file", "help"),
		cliutil.ExitCodeMismatches(string(readme))...) {
		t.Errorf("README: %s", m)
	}
}
