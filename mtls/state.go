package mtls

import (
	"crypto/tls"
	"crypto/x509"
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
	cert   *tls.Certificate    // Leaf set; shared read-only with handshakes
	chain  []*x509.Certificate // cert's chain, parsed, leaf first
	crtRev int64
	keyRev int64
	kekID  string // "" for a plain key
	// keyChecked: the key was opened and matched against the
	// certificate. Always true in a Store; false in Inspect for a sealed
	// key without a keyring (cert then has no PrivateKey).
	keyChecked bool
}

// state is one immutable view of the good material. The Store swaps it
// atomically; readers (handshakes, accessors) load it without locks.
type state struct {
	ca      *caBundle            // nil until a good bundle is loaded
	ids     map[string]*identity // good identities by name
	names   []string             // keys of ids, sorted
	revoked *revocationList      // nil: nothing revoked
	clients map[string]*peerIDs  // client policies read from etcd, by identity
}

// Identity describes one identity the Store knows of.
type Identity struct {
	// Name is the identity's name, as in /certs/<name>/.
	Name string `json:"name"`
	// Certificate describes the leaf certificate in use, nil if no good
	// material is loaded. It holds no key material and is safe to marshal
	// and log (Store.Certificate returns the certificate for handshakes).
	Certificate *CertificateInfo `json:"certificate,omitempty"`
	// Chain describes the intermediates presented after the leaf, if any.
	Chain []CertificateInfo `json:"chain,omitempty"`
	// Revision is the etcd ModRevision of the certificate in use.
	Revision int64 `json:"revision,omitempty"`
	// KEKID is the ID of the key-encryption key that sealed the key in
	// use, or "" for a plain PEM key.
	KEKID string `json:"kek_id,omitempty"`
	// KeyChecked reports that the private key was opened and matched
	// against the certificate: always for the identities a Store serves;
	// in an Inspect without a keyring, sealed keys are checked for form
	// only and KeyChecked is false.
	KeyChecked bool `json:"key_checked"`
	// Rejected is the last update of this identity that was refused since
	// the material in use was loaded, or nil.
	Rejected *ValidationError `json:"rejected,omitempty"`
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
