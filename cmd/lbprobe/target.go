package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/registry"
	"github.com/smartroute/smartroute/resolver"
)

// discard is the logger handed to the libraries: lbprobe reports what
// matters itself, once.
var discard = slog.New(slog.DiscardHandler)

// targetFlags configure how a target is resolved.
type targetFlags struct {
	etcd           etcdFlags
	prefix         string
	resolveTimeout durationValue
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	t.etcd.register(fs)
	t.resolveTimeout = durationValue(defaultResolveTimeout)
	fs.StringVar(&t.prefix, "etcd-prefix", registry.DefaultPrefix, "etcd key prefix of the service registry (etcd:/// targets)")
	fs.Var(&t.resolveTimeout, "resolve-timeout", "how long to wait for the target's first endpoint set")
}

// targetSession is a parsed target with its resolver, and the etcd client
// it reads through (nil for the other schemes).
type targetSession struct {
	target resolver.Target
	cli    *clientv3.Client
	res    resolver.Resolver
	// etcdTimeout bounds each etcd request (the --etcd-dial-timeout).
	etcdTimeout time.Duration
	// startErr is the start-up check's failure, for a session opened
	// leniently (watch): the resolver keeps trying through a client made
	// without the check.
	startErr error
}

// open parses raw and builds its resolver. A target that does not parse,
// and bad etcd flags, are usage errors. For etcd:/// targets it checks etcd
// first (cliutil.CheckEtcd): a failure is returned as an
// *cliutil.EtcdError, unless lenient, when the session keeps it in
// startErr and reads through a client made without the check.
func (t *targetFlags) open(ctx context.Context, raw string, lenient bool) (*targetSession, error) {
	tgt, err := resolver.Parse(raw)
	if err != nil {
		return nil, usageError{stripPkg(err)}
	}
	if t.resolveTimeout <= 0 {
		return nil, usagef("--resolve-timeout must be positive, not %v", time.Duration(t.resolveTimeout))
	}
	s := &targetSession{target: tgt, etcdTimeout: t.etcd.dialTimeout()}
	opts := []resolver.Option{resolver.WithLogger(discard)}
	if tgt.Scheme == resolver.SchemeEtcd {
		if !strings.HasPrefix(t.prefix, "/") {
			return nil, usagef("--etcd-prefix %q must start with /", t.prefix)
		}
		acc := readAccess(t.prefix)
		acc.Key = strings.TrimSuffix(t.prefix, "/") + "/" + tgt.Endpoint + "/"
		cli, err := t.etcd.newClient(ctx, acc)
		var ee *cliutil.EtcdError
		if lenient && errors.As(err, &ee) {
			s.startErr = err
			cfg, _ := t.etcd.config()
			cli, err = clientv3.New(cfg)
			if err != nil {
				return nil, err
			}
		}
		if err != nil {
			return nil, err
		}
		s.cli = cli
		opts = append(opts,
			resolver.WithEtcdClient(cli),
			resolver.WithPrefix(t.prefix),
			// The first list gives up after the dial timeout, so that
			// an unreachable etcd is reported rather than waited for.
			resolver.WithEtcdHealthCheck(resolver.DefaultEtcdCheckInterval, t.etcd.dialTimeout()),
		)
	}
	s.res, err = tgt.Build(opts...)
	if err != nil {
		s.close()
		return nil, usageError{fmt.Errorf("target %q: %w", raw, stripPkg(err))}
	}
	return s, nil
}

// close releases the etcd client.
func (s *targetSession) close() {
	if s.cli != nil {
		s.cli.Close()
	}
}

// errNoEndpoints is reported when a target resolves to an empty set.
var errNoEndpoints = errors.New("no endpoints")

// firstState waits for the resolver's first delivery, at most timeout.
// An empty set, a failed first resolution and no answer in time are
// errors.
func (s *targetSession) firstState(ctx context.Context, timeout time.Duration) (resolver.State, error) {
	wctx, cancel := context.WithCancel(ctx)
	first := make(chan resolver.State, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.res.Watch(wctx, func(st resolver.State) {
			select {
			case first <- st:
			default:
			}
		})
	}()
	watching := true // until done delivered Watch's return
	defer func() {
		cancel()
		if watching {
			<-done
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case st := <-first:
		if len(st.Endpoints) == 0 {
			if st.Err != nil {
				return st, fmt.Errorf("resolve %s: %w", s.target, stripPkg(st.Err))
			}
			return st, fmt.Errorf("resolve %s: %w", s.target, errNoEndpoints)
		}
		return st, nil
	case err := <-done:
		watching = false
		if ctx.Err() != nil {
			return resolver.State{}, ctx.Err()
		}
		return resolver.State{}, fmt.Errorf("resolve %s: %w", s.target, stripPkg(err))
	case <-t.C:
		return resolver.State{}, fmt.Errorf("resolve %s: no answer within %v", s.target, timeout)
	case <-ctx.Done():
		return resolver.State{}, ctx.Err()
	}
}

// service is the name the client package reports the target under.
func (s *targetSession) service() string {
	if s.target.Scheme == resolver.SchemeStatic {
		return "static"
	}
	return s.target.Endpoint
}

// leaseInfo is an etcd lease's remaining and granted TTL.
type leaseInfo struct {
	ttl, granted int64 // seconds; ttl is -1 once the lease expired
	err          error
}

// leases looks up the TTL of every lease the etcd endpoints are attached to.
func (s *targetSession) leases(ctx context.Context, eps []resolver.Endpoint) map[int64]leaseInfo {
	out := map[int64]leaseInfo{}
	if s.cli == nil {
		return out
	}
	for _, ep := range eps {
		id := ep.Origin.Lease
		if id == 0 {
			continue
		}
		if _, ok := out[id]; ok {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, s.etcdTimeout)
		resp, err := s.cli.TimeToLive(lctx, clientv3.LeaseID(id))
		cancel()
		if err != nil {
			out[id] = leaseInfo{err: err}
			continue
		}
		out[id] = leaseInfo{ttl: resp.TTL, granted: resp.GrantedTTL}
	}
	return out
}

// stripPkg removes the "resolver: " prefix the library puts on its
// errors: lbprobe's messages start with "lbprobe: " already.
func stripPkg(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, p := range []string{"resolver: ", "client: ", "mtls: ", "probe: "} {
		if strings.HasPrefix(msg, p) {
			return prefixStripped{msg: strings.TrimPrefix(msg, p), err: err}
		}
	}
	return err
}

// prefixStripped is err with a shorter message; errors.Is still sees err.
type prefixStripped struct {
	msg string
	err error
}

func (p prefixStripped) Error() string { return p.msg }
func (p prefixStripped) Unwrap() error { return p.err }
