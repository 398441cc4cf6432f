package cliutil

import "runtime/debug"

// Version returns the version a command prints and exports: ldflags (the
// value release builds set with -ldflags "-X main.version=v1.2.3") when
// not empty, else the module version (for go install ...@v1.2.3), else
// "(devel)" with the VCS revision when the binary was built from a
// checkout.
func Version(ldflags string) string {
	bi, ok := debug.ReadBuildInfo()
	return ResolveVersion(ldflags, bi, ok)
}

// ResolveVersion picks the version from the ldflags value and the build
// info (ok false when the binary has none).
func ResolveVersion(ldflags string, bi *debug.BuildInfo, ok bool) string {
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
