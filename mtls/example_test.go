package mtls_test

import (
	"context"
	"log"
	"log/slog"
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
