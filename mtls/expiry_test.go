package mtls

import (
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
)

// An identity left to expire while in use is logged once, at ERROR, when
// it expires: handshakes with it fail from then on, and the log says why.
func TestExpiryOfMaterialInUseIsLoggedOnce(t *testing.T) {
	e := newEnv(t)
	e.publish("api", e.ca.Peer(t, []string{apiName}, certgen.ValidFor(1500*time.Millisecond)))
	s := e.store()
	ready(t, s, "api")
	const msg = "the certificate of identity api expired and is still in use"
	if strings.Contains(e.logs.String(), msg) {
		t.Fatal("logged as expired before it expired")
	}
	waitFor(t, 30*time.Second, "the expiry to be logged", func() bool { return strings.Contains(e.logs.String(), msg) })
	// Another change makes the watcher look again: still one line.
	waitRev(t, s, e.publish("web", e.ca.Peer(t, []string{webName})))
	ready(t, s, "web")
	if n := strings.Count(e.logs.String(), msg); n != 1 {
		t.Fatalf("the expiry was logged %d times, want once", n)
	}
	if !strings.Contains(e.logs.String(), "level=ERROR") {
		t.Fatal("the expiry is not logged at ERROR")
	}
}
