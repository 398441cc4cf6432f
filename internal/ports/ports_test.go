package ports

import (
	"net"
	"strconv"
	"testing"
)

// Ports come from below the ephemeral range, distinct and free.
func TestFreePortsAreBelowTheEphemeralRange(t *testing.T) {
	low := EphemeralLow()
	ports, err := Free(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if low-base >= 1000 && (p < base || p >= low) {
			t.Errorf("port %d outside [%d, %d)", p, base, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d not free: %v", p, err)
			continue
		}
		l.Close()
	}
}
