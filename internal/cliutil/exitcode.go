package cliutil

// Exit codes of both commands: one table, printed by each --help
// (ExitCodesHelp) and documented in README and go doc. They follow what
// grpc-health-probe and etcdctl users expect: 0 is good, 2 is a mistake in
// what was typed, and the others say which kind of trouble was found.
const (
	// ExitOK: every endpoint healthy, every identity valid, the command
	// did what it was asked; regagent drained and deregistered.
	ExitOK = 0
	// ExitSome: some endpoints unhealthy, or some identities invalid, and
	// at least one healthy or valid (lbprobe).
	ExitSome = 1
	// ExitUsage: a bad flag, argument, environment variable or config
	// file; nothing was done.
	ExitUsage = 2
	// ExitEtcd: etcd could not be used (unreachable, TLS refused,
	// authentication failed, permission denied), or the target could not
	// be resolved; regagent and lbprobe watch also exit so after SIGTERM
	// when etcd never answered.
	ExitEtcd = 3
	// ExitNone: no endpoint healthy, no pick possible, no identity valid,
	// or a write refused by validation.
	ExitNone = 4
	// ExitFailure: any other failure at run time: interrupted before the
	// answer, --listen taken, output not written, a second signal.
	ExitFailure = 5
)

// ExitCodesHelp is the exit-code table as both commands print it in
// --help, and as their package documentation and README quote it.
const ExitCodesHelp = `Exit codes (the same for regagent and lbprobe):
  0  success: every endpoint healthy, every identity valid, done
  1  some endpoints unhealthy or some identities invalid (lbprobe)
  2  usage error: a bad flag, argument, environment variable or config file
  3  etcd failure (unreachable, TLS, authentication, permission) or the
     target could not be resolved; also after SIGTERM if etcd never answered
  4  none healthy: no endpoint healthy, no pick, no identity valid, or a
     write refused
  5  other failure: interrupted, --listen taken, output not written, a
     second signal
`
