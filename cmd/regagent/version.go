package main

import (
	"runtime/debug"
)

// version is the agent's version. Release builds set it with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/regagent
//
// When empty, versionString falls back to the module version and VCS
// revision recorded by the Go toolchain.
var version = ""

// versionString returns the version to print and export: the ldflags value,
// else the module version (for `go install ...@v1.2.3`), else "(devel)" with
// the VCS revision when the binary was built from a checkout.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return resolveVersion(version, bi, ok)
}

// resolveVersion picks the version from the ldflags value and the build
// info (ok false when the binary has none).
func resolveVersion(ldflags string, bi *debug.BuildInfo, ok bool) string {
	if ldflags != "" {
		return ldflags
	}
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if v == "(devel)" && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + dirty
	}
	return v
}
