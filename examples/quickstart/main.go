package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/mtls"
	"github.com/smartroute/smartroute/probe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}

// options are the command-line flags.
type options struct {
	duration time.Duration
	serve    bool
	plain    bool
	quiet    bool
	ttl      time.Duration
	workers  int
	rate     float64
	verbose  bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 40*time.Second, "how long the demo runs; the script is spread over it (at least 5s)")
	fs.BoolVar(&o.serve, "serve", false, "after the script, keep etcd and the backends up until Ctrl-C and print lbprobe commands to inspect them")
	fs.BoolVar(&o.plain, "plain", false, "print the table once a second instead of redrawing it (the default when stdout is not a terminal)")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the narration and the summary, no table")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Second, "lease TTL of the backends' registrations (whole seconds, at least 1s)")
	fs.IntVar(&o.workers, "workers", 4, "concurrent request loops")
	fs.Float64Var(&o.rate, "rate", 200, "requests per second, all workers together")
	fs.BoolVar(&o.verbose, "v", false, "log what the libraries log, to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.duration < 5*time.Second:
		return o, fmt.Errorf("-duration %v: want at least 5s", o.duration)
	case o.ttl < time.Second:
		return o, fmt.Errorf("-ttl %v: want at least 1s", o.ttl)
	case o.workers < 1:
		return o, fmt.Errorf("-workers %d: want at least 1", o.workers)
	case o.rate <= 0:
		return o, fmt.Errorf("-rate %v: want more than 0", o.rate)
	}
	return o, nil
}

// run runs the demo and returns the exit code: 0 when every request
// succeeded, 1 when one failed or the demo could not run, 2 for bad flags.
func run(ctx context.Context, args []string, stdout io.Writer) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stdout, "quickstart: %v\n", err)
		return 2
	}
	failed, err := demo(ctx, o, stdout)
	switch {
	case err != nil:
		fmt.Fprintf(stdout, "quickstart: %v\n", err)
		return 1
	case failed > 0:
		fmt.Fprintf(stdout, "quickstart: FAILED: %d requests failed\n", failed)
		return 1
	}
	return 0
}

// demo sets everything up, plays the script, tears everything down, and
// returns the number of failed requests.
func demo(ctx context.Context, o options, stdout io.Writer) (failed uint64, err error) {
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	scr := &screen{w: stdout, ansi: !o.plain && !o.quiet && isTerminal(stdout), quiet: o.quiet, start: time.Now()}
	bar := "#"
	if scr.ansi {
		bar = "█"
	}

	// Everything below is undone in reverse order by the deferred calls.
	dir, err := os.MkdirTemp("", "smartroute-quickstart-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	// 1. etcd, embedded, in the temporary directory.
	etcd, err := startEtcd(dir)
	if err != nil {
		return 0, err
	}
	defer etcd.Close()
	admin, err := etcd.client()
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	scr.say("etcd started at %s (data in %s)", etcd.endpoint, dir)

	// 2. A CA and two identities in etcd under /certs, keys sealed.
	setupCtx, cancelSetup := context.WithTimeout(ctx, 20*time.Second)
	defer cancelSetup()
	pk, err := newPKI(setupCtx, admin, dir)
	if err != nil {
		return 0, err
	}
	srvLeaf, _, err := pk.publishLeaves(setupCtx)
	if err != nil {
		return 0, err
	}
	// Each side watches /certs and keeps only its own identity (and the
	// CA bundle). In production these are two processes with their own
	// etcd client and the KEK from a file: mtls.LoadKEKFile.
	serverStore, err := mtls.NewStore(setupCtx, admin, mtls.WithKeyring(pk.keyring), mtls.WithIdentities(serverIdentity), mtls.WithLogger(logger))
	if err != nil {
		return 0, fmt.Errorf("server certificate store: %w", err)
	}
	defer serverStore.Close()
	clientStore, err := mtls.NewStore(setupCtx, admin, mtls.WithKeyring(pk.keyring), mtls.WithIdentities(clientIdentity), mtls.WithLogger(logger))
	if err != nil {
		return 0, fmt.Errorf("client certificate store: %w", err)
	}
	defer clientStore.Close()
	if err := errors.Join(serverStore.Ready(setupCtx, serverIdentity), clientStore.Ready(setupCtx, clientIdentity)); err != nil {
		return 0, err
	}
	scr.say("CA created; certificates for %q (server) and %q (client) published to /certs, keys sealed with KEK %s",
		serverIdentity, clientIdentity, pk.keyring.Primary())

	// 3. Five HTTPS backends requiring client certificates, registered
	// with leases. Their tls.Config reads the store at every handshake.
	fl := &fleet{etcd: etcd, tls: serverStore.ServerConfig(serverIdentity), ttl: o.ttl, logger: logger}
	defer fl.Close()
	var names []string
	for i, lat := range []time.Duration{3, 6, 10, 15, 25} {
		b, err := fl.start(setupCtx, fmt.Sprintf("b%d", i+1), lat*time.Millisecond)
		if err != nil {
			return 0, err
		}
		names = append(names, fmt.Sprintf("%s %s", b.name, fmtDuration(b.latency)))
	}
	scr.say("%d HTTPS backends (mTLS) registered under /services/%s/ with a %v lease: %s",
		len(names), serviceName, o.ttl, strings.Join(names, ", "))

	// 4. The smart client: it watches etcd:///api, probes every endpoint
	// over HTTPS with mTLS, and sends each request to the endpoint that
	// will answer fastest. The URL names the service; the certificate is
	// verified against that name.
	clientTLS := clientStore.ClientConfig(clientIdentity, serviceName)
	c, err := client.New("etcd:///"+serviceName,
		client.WithEtcdClient(admin),
		client.WithTransport(&http.Transport{TLSClientConfig: clientTLS, MaxIdleConnsPerHost: 64}),
		client.WithProbe(probe.HTTP{Scheme: "https", Host: serviceName, TLS: clientTLS},
			probe.WithInterval(500*time.Millisecond), probe.WithTimeout(400*time.Millisecond),
			probe.WithRise(1), probe.WithFall(2)),
		client.WithLogger(logger),
	)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.WaitReady(setupCtx); err != nil {
		return 0, err
	}
	scr.say(`client.New("etcd:///%s"), policy %s: %d workers send %.0f req/s to https://%s/`,
		serviceName, client.DefaultPolicy, o.workers, o.rate, serviceName)

	// 5. Load, table and script until the duration ends and the script
	// has played out (or Ctrl-C). A slow machine stretches the script
	// rather than cutting its last scenes, up to twice the duration.
	ld := newLoad(&http.Client{Transport: c}, o.workers, o.rate)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	playCtx, stopPlay := context.WithTimeout(ctx, 2*o.duration)
	defer stopPlay()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { ld.run(loadCtx) })
	var m meter
	wg.Go(func() { refresh(loadCtx, scr, &m, ld, fl, c, bar) })
	sc := &script{scr: scr, fleet: fl, client: c, load: ld, pki: pk,
		stores: []*mtls.Store{serverStore, clientStore}, clientTLS: clientTLS,
		start: start, duration: o.duration, serverSerial: shortSerial(srvLeaf.leaf.Cert.SerialNumber.Text(16))}
	wg.Go(func() {
		defer stopLoad()
		sc.play(playCtx)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(o.duration))):
		}
	})
	wg.Wait()
	scr.freeze()

	failed, first := ld.failures()
	scr.printf("\n%s", summary(ld, &m, sc, time.Since(start)))
	for _, e := range first {
		scr.printf("  failed: %v\n", e)
	}
	if ctx.Err() != nil {
		return failed, errors.New("interrupted")
	}
	if errs := sc.failedSteps(); len(errs) > 0 {
		return failed, fmt.Errorf("the script did not play out: %w", errors.Join(errs...))
	}
	if o.serve {
		caFile, certFile, keyFile, err := pk.writeFiles(dir)
		if err != nil {
			return failed, err
		}
		scr.printf("\nServing until Ctrl-C. Inspect the service with lbprobe:\n\n"+
			"  go run ./cmd/lbprobe endpoints etcd:///%s --etcd-endpoints %s \\\n"+
			"      --check https --tls-ca %s --tls-cert %s --tls-key %s --tls-server-name %s\n\n"+
			"  go run ./cmd/lbprobe certs list --etcd-endpoints %s --kek-file %s --kek-id %s\n\n",
			serviceName, etcd.endpoint, caFile, certFile, keyFile, serviceName, etcd.endpoint, pk.kekFile, kekID)
		<-ctx.Done()
		scr.printf("stopping: deregistering the backends, stopping etcd, removing %s\n", dir)
	}
	return failed, nil
}

// refresh redraws the table every second until ctx ends, and once more at
// the end.
func refresh(ctx context.Context, scr *screen, m *meter, ld *load, fl *fleet, c *client.Client, bar string) {
	m.next(ld, time.Now())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			iv := m.next(ld, now)
			backends := fl.list()
			m.account(iv, backends)
			failed, _ := ld.failures()
			scr.table(renderTable(now.Sub(scr.start), iv, ld.ok.Load(), failed, backends, c.Endpoints(), bar))
		}
	}
}

// summary is the closing paragraph: totals and each backend's share of the
// whole run.
func summary(ld *load, m *meter, sc *script, d time.Duration) string {
	ok := ld.ok.Load()
	failed, _ := ld.failures()
	by := ld.counts()
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, by[n]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %.1fs: %d ok, %d failed\n", ok+failed, d.Seconds(), ok, failed)
	fmt.Fprintf(&b, "answers by backend: %s\n", strings.Join(parts, ", "))
	if cmp := m.comparison(); cmp != "" {
		fmt.Fprintf(&b, "%s\n", cmp)
	}
	b.WriteString(sc.report())
	return b.String()
}
