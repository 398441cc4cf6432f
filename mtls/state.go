package mtls

import (
	"crypto/tls"
	"sync"
)

// rawValue is a value read from etcd; the zero rawValue (rev 0) is an
// absent key.
type rawValue struct {
	value []byte
	rev   int64 // ModRevision
}

func (v rawValue) present() bool { return v.rev != 0 }

// identity is the good material of one identity.
type identity struct {
	name   string
	cert   *tls.Certificate // Leaf set; shared read-only with handshakes
	crtRev int64
	keyRev int64
	kekID  string // "" for a plain key
}

// state is one immutable view of the good material. The Store swaps it
// atomically; readers (handshakes, accessors) load it without locks.
type state struct {
	ca    *caBundle            // nil until a good bundle is loaded
	ids   map[string]*identity // good identities by name
	names []string             // keys of ids, sorted
}

// Identity describes one identity the Store knows of.
type Identity struct {
	// Name is the identity's name, as in /certs/<name>/.
	Name string
	// Certificate is the certificate and key in use, nil if no good
	// material was ever loaded. Its Leaf is set. It is shared with the
	// handshakes: do not modify it.
	Certificate *tls.Certificate
	// Revision is the etcd ModRevision of the certificate in use.
	Revision int64
	// KEKID is the ID of the key-encryption key that sealed the key in
	// use, or "" for a plain PEM key.
	KEKID string
	// Rejected is the last update of this identity that was refused since
	// the material in use was loaded, or nil.
	Rejected *ValidationError
}

// signal is a broadcast: wait returns a channel that the next fire closes.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
