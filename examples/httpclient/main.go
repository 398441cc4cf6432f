package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/smartroute/smartroute/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("httpclient", flag.ContinueOnError)
	fs.SetOutput(stdout)
	etcd := fs.String("etcd", "127.0.0.1:2379", "comma-separated etcd endpoints")
	service := fs.String("service", "api", "service name, as registered under /services/<service>/")
	scheme := fs.String("scheme", "http", "http or https (https verifies the certificate against the service name)")
	path := fs.String("path", "/", "request path")
	n := fs.Int("n", 10, "number of requests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := send(ctx, stdout, strings.Split(*etcd, ","), *service, *scheme+"://"+*service+*path, *n); err != nil {
		fmt.Fprintf(stdout, "httpclient: %v\n", err)
		return 1
	}
	return 0
}

func send(ctx context.Context, stdout io.Writer, etcd []string, service, url string, n int) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()

	// The smart client is an http.RoundTripper: it follows etcd:///<service>,
	// probes every endpoint, and routes every request.
	c, err := client.New("etcd:///"+service, client.WithEtcdClient(cli))
	if err != nil {
		return err
	}
	defer c.Close()
	hc := &http.Client{Transport: c, Timeout: 5 * time.Second}

	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintf(stdout, "GET %s: %s in %v\n", url, resp.Status, time.Since(start).Round(10*time.Microsecond))
	}

	fmt.Fprintf(stdout, "\n%-22s %-9s %-10s %s\n", "ENDPOINT", "HEALTH", "RTT", "REQUESTS")
	for _, e := range c.Endpoints() {
		fmt.Fprintf(stdout, "%-22s %-9s %-10v %d\n", e.Addr, e.Health, e.RTT.Round(10*time.Microsecond), e.Requests)
	}
	return nil
}
