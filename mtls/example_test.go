package mtls_test

import (
	"context"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/mtls"
)

// A server loads its identity from etcd and serves HTTPS with mutual TLS.
// The tls.Config follows every rotation; nothing is restarted.
func ExampleStore_ServerConfig() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	// The key-encryption key comes from a file (or LoadKEKEnv).
	kek, err := mtls.LoadKEKFile("kek-2026-01", "/etc/smartroute/kek")
	if err != nil {
		log.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := mtls.NewStore(ctx, cli,
		mtls.WithKeyring(kr),
		mtls.WithIdentities("api"),
		mtls.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Ready(ctx, "api"); err != nil {
		log.Fatal(err) // says what is missing and why, e.g. a refused update
	}

	srv := &http.Server{
		Addr:      ":8443",
		Handler:   http.NotFoundHandler(),
		TLSConfig: store.ServerConfig("api"),
	}
	log.Fatal(srv.ListenAndServeTLS("", "")) // certificates come from TLSConfig
}

// A client presents its identity and verifies the server against the CA
// bundle in etcd and the service name, across rotations.
func ExampleStore_ClientConfig() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	kek, err := mtls.LoadKEKEnv("kek-2026-01", "SMARTROUTE_KEK")
	if err != nil {
		log.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := mtls.NewStore(ctx, cli, mtls.WithKeyring(kr), mtls.WithIdentities("web"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Ready(ctx, "web"); err != nil {
		log.Fatal(err)
	}

	// serverName "" verifies the host of each request's URL; name it
	// explicitly when the URL holds an IP address.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: store.ClientConfig("web", "")}}
	resp, err := client.Get("https://api.internal:8443/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
}

// Publish validates a certificate and key, seals the key and writes both
// in one transaction; a Store can wait for the revision it returns.
func ExamplePublish() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	kek, err := mtls.LoadKEKFile("kek-2026-01", "/etc/smartroute/kek")
	if err != nil {
		log.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		log.Fatal(err)
	}
	certPEM, err := os.ReadFile("api.crt")
	if err != nil {
		log.Fatal(err)
	}
	keyPEM, err := os.ReadFile("api.key")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := mtls.Publish(ctx, cli, kr, "api", certPEM, keyPEM)
	if err != nil {
		log.Fatal(err) // a *mtls.ValidationError says why it was refused
	}
	log.Printf("api published at revision %d", rev)
}

// Rotating the CA by overlap: add the new CA, rotate the leaves, remove
// the old CA, letting each step reach every process first.
func ExamplePublishCA() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	oldCA, _ := os.ReadFile("ca-2025.pem")
	newCA, _ := os.ReadFile("ca-2026.pem")
	ctx := context.Background()

	// 1. Trust both.
	if _, err := mtls.PublishCA(ctx, cli, append(oldCA, newCA...)); err != nil {
		log.Fatal(err)
	}
	// 2. Publish every identity's new leaf, signed by the new CA (Publish).
	// 3. Trust the new CA only; refused with ErrOrphanedIdentity while a
	//    leaf from the old CA is left.
	if _, err := mtls.PublishCA(ctx, cli, newCA); err != nil {
		log.Fatal(err)
	}
}

// A server that trusts only CA bundles chaining to a root kept on the host,
// accepts only the clients listed for it, and closes the connections of a
// client as soon as its certificate is revoked.
func ExampleStore_NewListener() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	kek, err := mtls.LoadKEKFile("kek-2026-01", "/etc/smartroute/kek")
	if err != nil {
		log.Fatal(err)
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		log.Fatal(err)
	}
	roots, err := mtls.LoadTrustAnchors("/etc/smartroute/root-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := mtls.NewStore(ctx, cli,
		mtls.WithKeyring(kr),
		mtls.WithIdentities("api"),
		mtls.WithTrustAnchors(roots...),
		mtls.WithAllowedClients("api", "spiffe://example.org/ns/prod/sa/web", "dns:batch.example.org"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Ready(ctx, "api"); err != nil {
		log.Fatal(err)
	}
	cfg := store.ServerConfig("api")
	cfg.NextProtos = []string{"h2", "http/1.1"}
	ln, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(store.NewListener(ln, cfg)))
}

// A client whose pooled connections to a server are closed when the
// server's certificate is revoked, and that accepts only the server
// holding the service's SPIFFE ID.
func ExampleStore_DialTLS() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	signers, err := mtls.LoadBundleSigners("/etc/smartroute/ca-signing.pub")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := mtls.NewStore(ctx, cli,
		mtls.WithIdentities("web"),
		mtls.WithBundleSigners(signers...),
		mtls.WithAllowedServers("api.example.org", "spiffe://example.org/ns/prod/sa/api"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	tr := &http.Transport{DialTLSContext: store.DialTLS(store.ClientConfig("web", "api.example.org"), nil)}
	resp, err := (&http.Client{Transport: tr}).Get("https://api.example.org/")
	if err != nil {
		log.Fatal(err) // a refused server's reason is in err and in the Store's logs
	}
	resp.Body.Close()
}

// Revoking a stolen client certificate: new handshakes presenting it fail
// on every server within milliseconds, and the connections it holds to
// servers that accept through NewListener are closed.
func ExampleRevoke() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	rev, err := mtls.Revoke(context.Background(), cli, []mtls.Revocation{
		{Serial: "5e1f0c3a9b2d4e6f", Reason: "laptop stolen"},
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("revoked at revision %d", rev)
}
