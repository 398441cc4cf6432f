package leakcheck

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Patience is how long VerifyTestMain waits, after the tests pass, for the
// goroutines they started to end.
const Patience = 15 * time.Second

// VerifyTestMain runs the tests and exits with their code. If they passed
// but goroutines are still running Patience later (other than the ignored
// ones below and opts), it prints those goroutines and exits 1.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := settle(time.Now().Add(Patience), append(ignored(), opts...)...); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running %v after the tests passed: %v\n", Patience, err)
			// CI logs often keep only their tail: say there, in one line
			// per goroutine, what each was doing and who started it.
			fmt.Fprint(os.Stderr, summary(err.Error()))
			code = 1
		}
	}
	os.Exit(code)
}

// settle waits until no unexpected goroutine runs, or deadline passes; it
// returns goleak's report of the goroutines left then.
func settle(deadline time.Time, opts ...goleak.Option) error {
	for {
		err := goleak.Find(opts...) // retries for about half a second itself
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// summary condenses goleak's report to one line per goroutine: its state,
// the function on top of its stack, and the function that started it.
func summary(report string) string {
	var b strings.Builder
	var n int
	var head string
	for _, line := range strings.Split(report, "\n") {
		switch {
		case strings.HasPrefix(line, "[Goroutine "):
			head = strings.TrimSuffix(strings.TrimPrefix(line, "["), " on top of the stack:")
		case strings.HasPrefix(line, "created by ") && head != "":
			fmt.Fprintf(&b, "  %s; %s\n", head, line)
			head = ""
			n++
		}
	}
	return fmt.Sprintf("leakcheck: %d goroutine(s) left running (stacks above):\n%s", n, b.String())
}

// ignored lists goroutines that libraries under the tests leave running
// after a clean shutdown; they belong to the library, not to the code under
// test. Each etcdtest member's traffic and each testbackend.Proxy go through
// toxiproxy, and toxiproxy v2.5.0 leaves a toxic's pipe goroutine blocked on
// a channel send when a link closes while the toxic holds data
// (ToxicStub.Run under NoopToxic.Pipe or SlicerToxic.Pipe), and, at the
// other end of the pipe, the link's reader blocked sending what it read into
// the stopped chain (ToxicLink.read under ChanWriter.Write).
func ignored() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	}
}
