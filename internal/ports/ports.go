// Package ports picks loopback ports for test servers that stop and restart
// on the same address.
//
// The kernel takes the local port of every outgoing connection from its
// ephemeral range, and so does a listen on port 0. A server that stops and
// later listens again on a port from that range may find it taken by some
// connection in between ("address already in use"). Ports below the range
// are only ever taken by explicit binds, so a restart finds its port free.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// base is the lowest port handed out: above the well-known and most
// registered service ports.
const base = 10000

// Listen listens on network ("tcp", "tcp4") at host, on a free port below
// the ephemeral range, or on a port of the kernel's choice where the range
// leaves no room below it.
func Listen(network, host string) (net.Listener, error) {
	low := EphemeralLow()
	if low-base >= 1000 {
		for range 200 {
			l, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(base+rand.IntN(low-base))))
			if err == nil {
				return l, nil
			}
		}
	}
	return net.Listen(network, net.JoinHostPort(host, "0"))
}

// Free returns n distinct ports free on 127.0.0.1 at the time of the call,
// below the ephemeral range where it leaves room. They are released before
// Free returns, so another process may take one before it is used.
func Free(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := Listen("tcp", "127.0.0.1")
		if err != nil {
			return nil, fmt.Errorf("reserve port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// EphemeralLow returns the start of the kernel's ephemeral port range
// (Linux; 32768, the usual value, where it cannot be read).
func EphemeralLow() int {
	const usual = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return usual
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return usual
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 1024 {
		return usual
	}
	return low
}
