package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/cliutil"
)

// etcdFlags are the flags that reach etcd, shared with regagent
// (cliutil.EtcdFlags).
type etcdFlags struct {
	cliutil.EtcdFlags
}

func (e *etcdFlags) register(fs *flag.FlagSet) { e.Register(fs, envPrefix) }

// dialTimeout is --etcd-dial-timeout.
func (e *etcdFlags) dialTimeout() time.Duration { return time.Duration(e.DialTimeout) }

// config validates the flags and returns the etcd client configuration.
// Its errors are usage errors that name the flag, on one line.
func (e *etcdFlags) config() (clientv3.Config, error) {
	cfg, err := e.Config()
	if err != nil {
		return cfg, usageError{errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))}
	}
	return cfg, nil
}

// newClient validates the flags, checks within --etcd-dial-timeout that
// etcd can be used as acc needs (cliutil.CheckEtcd: reachable, TLS,
// credentials, permission) and returns the client. A failure is an
// *cliutil.EtcdError naming the cause and the fix (exit 3).
func (e *etcdFlags) newClient(ctx context.Context, acc cliutil.Access) (*clientv3.Client, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	return cliutil.CheckEtcd(ctx, cfg, acc)
}

// diagnose names the cause of an error etcd returned after the start-up
// check (cliutil.DiagnoseEtcd).
func (e *etcdFlags) diagnose(err error, acc cliutil.Access, timeout time.Duration) error {
	cfg, cerr := e.Config()
	if cerr != nil {
		return err
	}
	return cliutil.DiagnoseEtcd(err, cfg, acc, timeout)
}

// readAccess is what the read-only commands need under prefix.
func readAccess(prefix string) cliutil.Access {
	p := strings.TrimSuffix(prefix, "/") + "/"
	return cliutil.Access{Key: p, Prefix: true, GrantPrefix: p, Role: "smartroute-reader"}
}

// writeAccess is what the certs commands that write need under prefix.
func writeAccess(prefix string) cliutil.Access {
	p := strings.TrimSuffix(prefix, "/") + "/"
	return cliutil.Access{Key: p, Prefix: true, Write: true, GrantPrefix: p, Role: "smartroute-cert-admin"}
}

// exitCodeOf is the exit code of a runtime error: ExitEtcd for etcd's
// failures, otherwise def.
func exitCodeOf(err error, def int) int {
	var ee *cliutil.EtcdError
	if errors.As(err, &ee) {
		return exitEtcd
	}
	return def
}
