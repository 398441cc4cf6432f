package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/resolver"
)

// serviceConfig selects the smartroute balancer with policy, probing every
// server with a TCP connect each second (its RTT seeds the latency estimate
// of a server no call has measured yet; "kind": "grpc" asks
// grpc.health.v1 instead, over a new connection each time), and retries
// UNAVAILABLE calls (a server that went away) on another server.
func serviceConfig(policy string) string {
	return `{
  "loadBalancingConfig": [{"smartroute": {
    "policy": "` + policy + `",
    "probe": {"kind": "tcp", "interval": "1s", "timeout": "500ms"}
  }}],
  "methodConfig": [{
    "name": [{"service": "grpc.testing.TestService"}],
    "waitForReady": true,
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`
}

// call sends c.n UnaryCalls to etcd:///<service> and prints which server
// answered how many.
func call(ctx context.Context, cli *clientv3.Client, c config, out io.Writer) error {
	// Once per process, before dialling: gRPC keeps balancers in a
	// global registry.
	client.RegisterGRPCBalancer(client.WithLogger(c.logger))
	conn, err := grpc.NewClient("etcd:///"+c.service,
		grpc.WithResolvers(resolver.NewGRPCBuilder(cli, resolver.WithLogger(c.logger))),
		grpc.WithDefaultServiceConfig(serviceConfig(c.policy)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	tc := testpb.NewTestServiceClient(conn)

	by := map[string]int{}
	var total time.Duration
	for range c.n {
		callCtx, cancel := context.WithTimeout(ctx, c.deadline)
		start := time.Now()
		resp, err := tc.UnaryCall(callCtx, &testpb.SimpleRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("UnaryCall: %w", err)
		}
		total += time.Since(start)
		by[resp.GetServerId()]++
	}

	ids := make([]string, 0, len(by))
	for id := range by {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s %d", id, by[id])
	}
	fmt.Fprintf(out, "client: %d calls to etcd:///%s with %s, mean %v; answers by server: %s\n",
		c.n, c.service, c.policy, (total / time.Duration(max(c.n, 1))).Round(10*time.Microsecond), strings.Join(parts, ", "))
	return nil
}
