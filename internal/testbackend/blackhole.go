package testbackend

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Blackhole accepts TCP connections on loopback and never reads from or
// writes to them: connects succeed, requests are never answered. It holds
// the connections until Close.
type Blackhole struct {
	ln       net.Listener
	accepted atomic.Int64

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	done   chan struct{}
}

// NewBlackhole starts a Blackhole on 127.0.0.1 and a free port.
func NewBlackhole() (*Blackhole, error) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Blackhole{ln: ln, done: make(chan struct{})}
	go b.accept()
	return b, nil
}

// MustBlackhole is NewBlackhole for tests: it fails t on error and closes
// the Blackhole in t.Cleanup.
func MustBlackhole(t testing.TB) *Blackhole {
	t.Helper()
	b, err := NewBlackhole()
	if err != nil {
		t.Fatalf("testbackend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func (b *Blackhole) accept() {
	defer close(b.done)
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			_ = c.Close()
			return
		}
		b.conns = append(b.conns, c)
		b.mu.Unlock()
	}
}

// Addr returns the host:port the Blackhole listens on.
func (b *Blackhole) Addr() string { return b.ln.Addr().String() }

// Accepted returns how many connections it accepted.
func (b *Blackhole) Accepted() int64 { return b.accepted.Load() }

// Close stops listening and closes the held connections. It is idempotent.
func (b *Blackhole) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	err := b.ln.Close()
	<-b.done
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}
