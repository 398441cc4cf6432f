package mtls

import (
	"context"
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials returns gRPC transport credentials for a server that
// handshake with cfg (a config from ServerConfig) and track each
// connection as NewListener does: when the revocation list, a client
// policy or the identities served change, the connections of a client
// that is revoked or no longer allowed, and those that presented an
// identity no longer served, are closed at once. gRPC makes its own TLS
// handshakes, so a listener cannot do this for a gRPC server.
//
//	srv := grpc.NewServer(grpc.Creds(store.ServerCredentials(store.ServerConfig("api"))))
func (s *Store) ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return &trackedCreds{TransportCredentials: credentials.NewTLS(s.trackingConfig(cfg)), s: s}
}

// trackedCreds are TLS credentials whose server handshakes run on tracked
// connections.
type trackedCreds struct {
	credentials.TransportCredentials
	s *Store
}

func (c *trackedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc := c.s.conns.add(raw, sideServer, "")
	conn, info, err := c.TransportCredentials.ServerHandshake(tc)
	if err != nil {
		_ = tc.Close()
		return nil, nil, err
	}
	return conn, info, nil
}

func (c *trackedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ClientHandshake(ctx, authority, raw)
}

func (c *trackedCreds) Clone() credentials.TransportCredentials {
	return &trackedCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s}
}
