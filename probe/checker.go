package probe

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Checker checks one address and reports the round-trip time of the check.
// addr is a host:port. A Checker must honour ctx's deadline and must be
// safe for concurrent use: the Prober calls it from one goroutine per
// address.
type Checker interface {
	Check(ctx context.Context, addr string) (time.Duration, error)
}

// CheckerFunc adapts an ordinary function to a Checker.
type CheckerFunc func(ctx context.Context, addr string) (time.Duration, error)

// Check calls f(ctx, addr).
func (f CheckerFunc) Check(ctx context.Context, addr string) (time.Duration, error) {
	return f(ctx, addr)
}

// TCP checks that a TCP connection to the address can be opened. The RTT is
// the time the connect took (one SYN / SYN-ACK round trip on a healthy
// path). The connection is closed right away.
type TCP struct{}

// Check dials addr and closes the connection.
func (TCP) Check(ctx context.Context, addr string) (time.Duration, error) {
	var d net.Dialer
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	rtt := time.Since(start)
	if err != nil {
		return rtt, fmt.Errorf("probe: tcp %s: %w", addr, err)
	}
	_ = conn.Close()
	return rtt, nil
}
