package cliutil

import (
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"regexp"
	"strings"
)

// PackageDoc returns the package documentation of the Go file at path, as
// go doc prints it (the comment's text).
func PackageDoc(path string) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		return "", err
	}
	if f.Doc == nil {
		return "", fmt.Errorf("%s has no package documentation", path)
	}
	return f.Doc.Text(), nil
}

// flagInDoc finds the flags a document names: --name, and -x for the
// one-letter ones at the start of a line of a flag list.
var flagInDoc = regexp.MustCompile(`(?m)(?:--([a-z][a-z0-9-]*[a-z0-9])|^\s+-([a-z])\b)`)

// DocMismatches compares a command's documentation with its flags (the
// flag sets its --help prints): it lists each flag the help has and the
// documentation does not name, each flag the documentation names that no
// flag set has, and each line of ExitCodesHelp's table the documentation
// lacks. ignore lists names that look like flags in the documentation
// but are another program's (etcd's --trusted-ca-file).
func DocMismatches(doc string, sets []*flag.FlagSet, ignore ...string) []string {
	return append(FlagMismatches(doc, sets, ignore...), ExitCodeMismatches(doc)...)
}

// FlagMismatches is the flags' part of DocMismatches.
func FlagMismatches(doc string, sets []*flag.FlagSet, ignore ...string) []string {
	var out []string
	has := map[string]bool{}
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) { has[f.Name] = true })
	}
	named := map[string]bool{}
	for _, m := range flagInDoc.FindAllStringSubmatch(doc, -1) {
		named[m[1]+m[2]] = true
	}
	for name := range has {
		dash := "--"
		if len(name) == 1 {
			dash = "-"
		}
		if !named[name] && !strings.Contains(doc, dash+name) {
			out = append(out, fmt.Sprintf("the help has %s%s, the documentation does not", dash, name))
		}
	}
	for name := range named {
		if !has[name] && !contains(ignore, name) {
			out = append(out, fmt.Sprintf("the documentation names --%s, the help does not have it", name))
		}
	}
	return out
}

// ExitCodeMismatches lists the lines of ExitCodesHelp's table that doc
// lacks (spacing aside).
func ExitCodeMismatches(doc string) []string {
	var out []string
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	flat := norm(doc)
	for line := range strings.SplitSeq(ExitCodesHelp, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "Exit codes") {
			continue
		}
		if !strings.Contains(flat, norm(line)) {
			out = append(out, fmt.Sprintf("the documentation lacks the exit-code line %q", line))
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
