package cliutil

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Format is an output format, set by -o/--output (kubectl and etcdctl
// style) or by --json, its alias for -o json.
type Format string

// The output formats.
const (
	// Table is the default: aligned columns for a person.
	Table Format = "table"
	// Wide is the table with more columns.
	Wide Format = "wide"
	// JSON is for programs: one document (watch: one object per line),
	// errors included as {"error": ...}.
	JSON Format = "json"
)

var formats = []Format{Table, Wide, JSON}

// String returns the format's name.
func (f *Format) String() string {
	if f == nil || *f == "" {
		return string(Table)
	}
	return string(*f)
}

// Set parses a format name.
func (f *Format) Set(s string) error {
	v := Format(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(formats, v) {
		return fmt.Errorf("%q is not table, wide or json", s)
	}
	*f = v
	return nil
}

// IsJSON reports whether the format is JSON.
func (f Format) IsJSON() bool { return f == JSON }

// jsonAlias is the boolean --json flag: true sets the format to JSON.
type jsonAlias struct{ f *Format }

func (j jsonAlias) String() string {
	if j.f != nil && *j.f == JSON {
		return "true"
	}
	return "false"
}

func (j jsonAlias) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "t", "yes":
		*j.f = JSON
	case "false", "0", "f", "no":
		if *j.f == JSON {
			*j.f = Table
		}
	default:
		return fmt.Errorf("%q is not true or false", s)
	}
	return nil
}

func (jsonAlias) IsBoolFlag() bool { return true }

// RegisterFormat defines -o, --output and --json on fs, all setting f
// (which starts as Table). what says what the formats write, for the
// help.
func RegisterFormat(fs *flag.FlagSet, f *Format) {
	*f = Table
	fs.Var(f, "o", "output format: table, wide (more columns) or json; errors are JSON too")
	fs.Var(f, "output", "output format, as -o")
	fs.Var(jsonAlias{f}, "json", "write JSON, as -o json")
}

// FormatFlagNames are the names RegisterFormat defines; the environment
// sets only --output (LBPROBE_OUTPUT), not its aliases.
var FormatFlagNames = []string{"o", "output", "json"}

// FormatInArgs finds the output format args ask for, without parsing
// them, so that an error in the other flags can still be written as JSON
// when -o json or --json is among them. It returns Table when none is
// given or the value is bad.
func FormatInArgs(args []string) Format {
	out := Table
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			continue
		}
		switch name {
		case "json":
			if !hasVal || val == "true" || val == "1" {
				out = JSON
			} else {
				out = Table
			}
		case "o", "output":
			if !hasVal && i+1 < len(args) {
				val = args[i+1]
				i++
			}
			var f Format
			if f.Set(val) == nil {
				out = f
			}
		}
	}
	return out
}

// ErrorDoc is the JSON document a command writes on stdout, instead of
// its usual output, when it fails with -o json: programs reading stdout
// see the failure, not an empty document.
type ErrorDoc struct {
	// Error is the message also written on stderr, without the program's
	// name.
	Error string `json:"error"`
	// Cause names the kind of etcd failure (see Cause), when it is one.
	Cause Cause `json:"cause,omitempty"`
	// ExitCode is the process's exit code.
	ExitCode int `json:"exit_code"`
}

// WriteError writes err as an ErrorDoc on one line.
func WriteError(w io.Writer, err error, code int) error {
	doc := ErrorDoc{Error: err.Error(), ExitCode: code}
	var ee *EtcdError
	if errors.As(err, &ee) {
		doc.Cause = ee.Cause
	}
	b, merr := json.Marshal(doc)
	if merr != nil {
		return merr
	}
	_, werr := w.Write(append(b, '\n'))
	return werr
}

// Plural returns n and the noun in the number n asks for: "1 check", "5
// checks".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
