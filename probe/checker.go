package probe

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/smartroute/smartroute/loadreport"
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

// LoadChecker is a Checker whose answers may carry the endpoint's load
// report (HTTP reads the endpoint-load-metrics header, GRPCHealth the ORCA
// report of the health call). The Prober calls CheckLoad instead of Check
// when its Checker has it, and keeps the latest report in Status.Load.
type LoadChecker interface {
	Checker
	// CheckLoad is Check that also returns the load report the answer
	// carried. The error is the check's verdict, as for Check; a report
	// that cannot be used does not fail the check: it is Result.LoadErr.
	CheckLoad(ctx context.Context, addr string) (Result, error)
}

// Result is what one CheckLoad found.
type Result struct {
	// RTT is the round-trip time, as Check returns it.
	RTT time.Duration
	// Load is the load report the answer carried, with Load.Received the
	// time it arrived; Load.IsZero() when there was none.
	Load loadreport.Report
	// LoadErr is why a report that was sent could not be used (it was
	// malformed, or the ORCA stream failed); nil when it could or when
	// none was sent.
	LoadErr error
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
