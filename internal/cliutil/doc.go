// Package cliutil is the plumbing the smartroute commands (regagent,
// lbprobe) share, so that they follow one set of conventions: one table of
// exit codes, one way to read flags from the environment (each command
// with its own prefix) and from a config file, the etcd flags with their
// checks, a start-up check of etcd that names the cause of a failure and
// its fix, output formats (-o table|wide|json), loggers whose JSON prints
// durations and states as text, and the version string.
//
// No user should import it: it is internal so that the commands can change
// it together.
package cliutil
