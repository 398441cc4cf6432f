package mtls

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A gRPC server whose credentials come from ServerCredentials drops the
// connection of a client whose certificate is revoked, within moments of
// the revocation, and refuses its new handshakes; another client's calls
// go on.
func TestRevokedClientsGRPCConnectionIsClosed(t *testing.T) {
	e := newEnv(t)
	thief := e.ca.Peer(t, []string{"thief.test"})
	e.publish("api", e.ca.Peer(t, []string{apiName}))
	e.publish("web", e.ca.Peer(t, []string{webName}))
	e.publish("thief", thief)
	srvStore := e.store(WithIdentities("api"))
	cliStore := e.store(WithIdentities("web"))
	ready(t, srvStore, "api")
	ready(t, cliStore, "web")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(srvStore.ServerCredentials(srvStore.ServerConfig("api"))))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})

	dial := func(creds credentials.TransportCredentials) healthpb.HealthClient {
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	check := func(c healthpb.HealthClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	good := dial(credentials.NewTLS(cliStore.ClientConfig("web", apiName)))
	bad := dial(credentials.NewTLS(plainClient(t, e.ca, thief)))
	if err := check(good); err != nil {
		t.Fatal(err)
	}
	if err := check(bad); err != nil {
		t.Fatalf("before revocation: %v", err)
	}

	start := time.Now()
	if _, err := Revoke(ctxT(t, 10*time.Second), e.cli, []Revocation{{Serial: serialHex(thief.Cert), Reason: "laptop stolen"}}); err != nil {
		t.Fatal(err)
	}
	// The thief's connection is closed by the server and a new one is
	// refused: its calls fail from then on.
	waitFor(t, 30*time.Second, "the revoked client's calls to fail", func() bool { return check(bad) != nil })
	t.Logf("the revoked client's calls failed %v after the revocation", time.Since(start).Round(time.Millisecond))
	for range 5 {
		if err := check(bad); err == nil {
			t.Fatal("a call with the revoked certificate succeeded after it had failed")
		}
	}
	for range 20 {
		if err := check(good); err != nil {
			t.Fatalf("another client's call failed: %v", err)
		}
	}
}
