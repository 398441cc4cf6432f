package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"
)

// connTracker holds the connections accepted through NewListener and
// dialled through DialTLS, with the peer certificate each handshake
// verified, so that the Store can close those whose peer is revoked or
// no longer allowed, and those that presented an identity the Store no
// longer serves.
//
// Handshakes record their peer under mu after checking it against the
// current state, and a sweep (after the state changed) checks every
// recorded peer under mu against the new state: a handshake either sees
// the new state or is seen by the sweep, so none slips through.
type connTracker struct {
	s     *Store
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newConnTracker(s *Store) *connTracker {
	return &connTracker{s: s, conns: map[*trackedConn]struct{}{}}
}

// trackedConn is a raw connection under a tracked *tls.Conn.
type trackedConn struct {
	net.Conn
	t    *connTracker
	side string

	// Guarded by t.mu.
	local  string              // server: identity presented; client: server name verified
	peer   []*x509.Certificate // set once the handshake has verified the peer
	closed bool                // closed by a sweep
	once   sync.Once
}

func (t *connTracker) add(raw net.Conn, side, local string) *trackedConn {
	tc := &trackedConn{Conn: raw, t: t, side: side, local: local}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

// Close forgets the connection and closes it.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// errConnClosed fails a handshake on a connection a sweep closed.
var errConnClosed = errors.New("mtls: connection closed: its peer is no longer allowed")

// bind records the verified peer of tc's handshake, after checking it
// against the current state.
func (t *connTracker) bind(tc *trackedConn, cs tls.ConnectionState) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc.closed {
		return errConnClosed
	}
	st := t.s.cur.Load()
	if perr := t.s.checkPeer(st, tc.side, tc.local, cs.PeerCertificates); perr != nil {
		t.s.refusedPeer(tc.side, tc.local, cs.PeerCertificates, perr)
		return perr
	}
	tc.peer = cs.PeerCertificates
	return nil
}

// setLocal records the identity a server connection presents.
func (t *connTracker) setLocal(tc *trackedConn, name string) {
	t.mu.Lock()
	tc.local = name
	t.mu.Unlock()
}

// sweep closes the tracked connections that the current state no longer
// allows: a revoked or unauthorized peer, or (server side) an identity
// presented that is no longer served. Only the raw connection is closed:
// its owner (net/http, the caller) sees the error, closes the TLS
// connection and so forgets it here.
func (t *connTracker) sweep() {
	st := t.s.cur.Load()
	closed := map[string]int{}
	t.mu.Lock()
	for tc := range t.conns {
		if tc.peer == nil || tc.closed {
			continue
		}
		reason := ""
		var err error
		if perr := t.s.checkPeer(st, tc.side, tc.local, tc.peer); perr != nil {
			reason, err = perr.reason, perr
		} else if tc.side == sideServer && tc.local != "" && st.ids[tc.local] == nil {
			reason, err = peerNotServed, fmt.Errorf("identity %q no longer served", tc.local)
		}
		if reason == "" {
			continue
		}
		tc.closed = true
		_ = tc.Conn.Close()
		t.s.m.connClosed(tc.side, reason)
		closed[tc.side+" "+reason]++
		t.s.log.Debug("mtls: connection closed", "side", tc.side, "reason", reason, "remote", tc.RemoteAddr().String(),
			"peer", tc.peer[0].Subject.String(), "serial", serialHex(tc.peer[0]), "err", err)
	}
	t.mu.Unlock()
	for _, k := range slices.Sorted(maps.Keys(closed)) {
		t.s.log.Warn("mtls: connections closed: their peer is no longer allowed", "what", k, "connections", closed[k])
	}
}

// NewListener returns a listener that accepts TLS connections on inner
// with cfg (a config from ServerConfig, which the caller may have
// adjusted, e.g. NextProtos for HTTP/2) and tracks them: when the
// revocation list, a client policy or the identities served change, the
// connections whose client is revoked or no longer allowed, and those that
// presented an identity no longer served (WithDropDeleted, or revoked),
// are closed at once. Handshakes are made as with tls.NewListener, by the
// first Read or Write or by Handshake; Accept returns *tls.Conn.
//
//	ln, _ := net.Listen("tcp", ":8443")
//	cfg := store.ServerConfig("api")
//	cfg.NextProtos = []string{"h2", "http/1.1"}
//	srv := &http.Server{Handler: h}
//	go srv.Serve(store.NewListener(ln, cfg))
//
// The listener's connections stay tracked after Close of the Store, but
// are no longer swept. Closing the listener closes inner.
func (s *Store) NewListener(inner net.Listener, cfg *tls.Config) net.Listener {
	return &trackedListener{Listener: inner, s: s, cfg: s.trackingConfig(cfg)}
}

// trackingConfig returns a server config that does what cfg does and
// records each handshake on the trackedConn it runs on: the identity
// presented and the verified peer.
func (s *Store) trackingConfig(cfg *tls.Config) *tls.Config {
	base := cfg.Clone()
	tmpl := cfg.Clone()
	user := base.GetConfigForClient
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := tmpl
		if user != nil {
			uc, err := user(hello)
			if err != nil {
				return nil, err
			}
			if uc != nil {
				c = uc
			}
		}
		tc, ok := hello.Conn.(*trackedConn)
		if !ok {
			return c, nil
		}
		// A config per connection, whose hooks know the connection. The
		// session ticket keys stay the listener's (crypto/tls takes them
		// from the original config unless this one sets its own).
		c = c.Clone()
		c.GetConfigForClient = nil
		getCert, verify := c.GetCertificate, c.VerifyConnection
		if getCert != nil {
			c.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
				cert, err := getCert(h)
				if err == nil {
					s.conns.setLocal(tc, s.identityOf(cert))
				}
				return cert, err
			}
		}
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			if cs.DidResume && getCert != nil {
				// A resumed TLS 1.3 session presents no certificate, so
				// GetCertificate did not run: ask it which identity
				// answers for the name, as the first handshake did.
				if cert, err := getCert(&tls.ClientHelloInfo{ServerName: cs.ServerName}); err == nil {
					s.conns.setLocal(tc, s.identityOf(cert))
				}
			}
			return s.conns.bind(tc, cs)
		}
		return c, nil
	}
	return base
}

type trackedListener struct {
	net.Listener
	s   *Store
	cfg *tls.Config
}

// Accept waits for the next connection and returns it as a *tls.Conn
// whose handshake has not been made yet.
func (l *trackedListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(l.s.conns.add(raw, sideServer, ""), l.cfg), nil
}

// identityOf returns the name of the identity whose certificate cert is,
// or "" when it is none of the Store's (any more).
func (s *Store) identityOf(cert *tls.Certificate) string {
	st := s.cur.Load()
	for _, n := range st.names {
		if st.ids[n].cert == cert {
			return n
		}
	}
	return ""
}

// DialFunc dials a network connection, as net.Dialer.DialContext and
// http.Transport.DialContext do.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// defaultDialTimeout bounds a TCP connect when DialTLS is given no dial
// function, as net/http's default transport does.
const defaultDialTimeout = 30 * time.Second

// DialTLS returns a function for http.Transport.DialTLSContext that dials
// addr with dial (a net.Dialer with a 30 s timeout if nil), makes the TLS
// handshake with cfg (a config from ClientConfig) and tracks the
// connection: when the server's certificate is revoked, or no longer
// allowed, the connection is closed at once, so that a transport's pooled
// connections to it go and new ones must pass the new checks. Without
// it, a revoked server keeps serving the connections already open.
//
// When cfg has no ServerName, the host of addr is verified. With a
// smartroute client, which dials endpoint addresses, set the service's
// name in cfg (ClientConfig(identity, "api")).
//
//	tr := &http.Transport{DialTLSContext: store.DialTLS(store.ClientConfig("web", "api"), nil)}
//
// net/http uses HTTP/1.1 over connections from DialTLSContext unless the
// transport sets ForceAttemptHTTP2 and cfg offers "h2" in NextProtos.
func (s *Store) DialTLS(cfg *tls.Config, dial DialFunc) DialFunc {
	if dial == nil {
		dial = (&net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c := cfg.Clone()
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			c.ServerName = host
		}
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := s.conns.add(raw, sideClient, c.ServerName)
		verify := c.VerifyConnection
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			return s.conns.bind(tc, cs)
		}
		conn := tls.Client(tc, c)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
}
