package main

import "github.com/smartroute/smartroute/internal/cliutil"

// version is the agent's version. Release builds set it with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/regagent
//
// When empty, versionString falls back to the module version and VCS
// revision recorded by the Go toolchain.
var version = ""

// versionString returns the version to print and export (cliutil.Version).
func versionString() string { return cliutil.Version(version) }
