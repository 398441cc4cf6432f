package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}

// config holds the flags.
type config struct {
	role     string
	etcd     []string
	service  string
	id       string
	addr     string
	latency  time.Duration
	ttl      time.Duration
	drain    time.Duration
	n        int
	policy   string
	servers  int // -role both
	deadline time.Duration
	verbose  bool
	logger   *slog.Logger
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	var etcd string
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.role, "role", "both", "server, client, or both (three servers and a client in one process)")
	fs.StringVar(&etcd, "etcd", "127.0.0.1:2379", "comma-separated etcd endpoints")
	fs.StringVar(&c.service, "service", "echo", "service name")
	fs.StringVar(&c.id, "id", "", "server: instance ID (default: the address)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "server: listen address")
	fs.DurationVar(&c.latency, "latency", 0, "server: delay of every UnaryCall")
	fs.DurationVar(&c.ttl, "ttl", 10*time.Second, "server: lease TTL")
	fs.DurationVar(&c.drain, "drain", 2*time.Second, "server: how long to stay draining before deregistering on Ctrl-C")
	fs.IntVar(&c.n, "n", 100, "client: number of calls")
	fs.StringVar(&c.policy, "policy", "least_latency", "client: balancing policy (least_latency, p2c, round_robin, ...)")
	fs.IntVar(&c.servers, "servers", 3, "both: number of servers, with latencies 2ms, 10ms, 20ms, ...")
	fs.DurationVar(&c.deadline, "timeout", 5*time.Second, "client: deadline of each call")
	fs.BoolVar(&c.verbose, "v", false, "log what the libraries do (registrations, health changes), not only warnings")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.etcd = strings.Split(etcd, ",")
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	c.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.role != "server" && c.role != "client" && c.role != "both":
		return c, fmt.Errorf("-role %q: want server, client or both", c.role)
	}
	return c, nil
}

func run(ctx context.Context, args []string, out io.Writer) int {
	c, err := parseFlags(args, out)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(out, "grpc: %v\n", err)
		return 2
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintf(out, "grpc: etcd: %v\n", err)
		return 1
	}
	defer cli.Close()

	switch c.role {
	case "server":
		err = serve(ctx, cli, c, out, nil)
	case "client":
		err = call(ctx, cli, c, out)
	case "both":
		err = both(ctx, cli, c, out)
	}
	if err != nil {
		fmt.Fprintf(out, "grpc: %v\n", err)
		return 1
	}
	return 0
}

// both runs c.servers servers with growing latencies and a client against
// them, then stops the servers.
func both(ctx context.Context, cli *clientv3.Client, c config, out io.Writer) error {
	srvCtx, stopServers := context.WithCancel(ctx)
	defer stopServers()
	var wg sync.WaitGroup
	errs := make([]error, c.servers)
	ready := make(chan struct{}, c.servers)
	failed := make(chan struct{}, c.servers)
	for i := range c.servers {
		sc := c
		sc.id = fmt.Sprintf("s%d", i+1)
		sc.latency = []time.Duration{2, 10, 20}[i%3] * time.Millisecond * time.Duration(1+i/3)
		sc.drain = 0
		wg.Go(func() {
			if errs[i] = serve(srvCtx, cli, sc, out, ready); errs[i] != nil {
				failed <- struct{}{}
			}
		})
	}
	for range c.servers {
		select {
		case <-ready:
			continue
		case <-failed:
		case <-ctx.Done():
		}
		stopServers()
		wg.Wait()
		return errors.Join(append(errs, ctx.Err())...)
	}
	err := call(ctx, cli, c, out)
	stopServers()
	wg.Wait()
	return errors.Join(append(errs, err)...)
}
