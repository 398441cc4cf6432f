package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQuickstart runs the whole demo in-process with the script compressed
// into 8 seconds, and checks what a user would read: it exits 0 with no
// failed request, every event of the script is narrated, the killed backend
// got no request after failover, the new backend got traffic, new
// handshakes use the rotated certificate, the drained backend got no new
// request, and the temporary directory is gone.
func TestQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, []string{"-duration", "8s", "-ttl", "2s", "-plain"}, &out)
	text := out.String()
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s", text)
		}
	}()
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}

	// The narration, in order.
	events := []string{
		`etcd started at http://127\.0\.0\.1:\d+`,
		`certificates for "api" \(server\) and "web" \(client\) published to /certs, keys sealed`,
		`5 HTTPS backends \(mTLS\) registered under /services/api/`,
		`kill b1 \(3\.0ms, the fastest\)`,
		`failover: b1 out of rotation .* failed requests so far: 0`,
		`b6 \(2\.0ms\) starts and registers`,
		`b6 answered its first request`,
		`surge: another service sends b\d .* 24 requests at a time`,
		`surge: b\d reported \d+ requests in flight \(capacity 8\)`,
		`surge over: (b\d has its traffic back|within .* the client expects b\d to answer in .* again)`,
		`certificates rotated: .* no restart`,
		`new handshakes present serial .*; failed requests so far: 0`,
		`b6 drains`,
		`the client sends b6 no new requests`,
		`b6 deregistered .*; failed requests so far: 0`,
	}
	rest := text
	for _, ev := range events {
		loc := regexp.MustCompile(ev).FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("narration %q missing (or out of order)", ev)
		}
		rest = rest[loc[1]:]
	}

	total := mustMatch(t, text, `(\d+) requests in [\d.]+s: (\d+) ok, (\d+) failed`)
	if total[3] != "0" {
		t.Errorf("%s requests failed, want 0", total[3])
	}
	if n, _ := strconv.Atoi(total[2]); n < 500 {
		t.Errorf("only %d requests answered in 8s, want a steady stream", n)
	}
	mustMatch(t, text, `failover: the client sent 0 requests to b1 after taking it out of rotation`)
	mustMatch(t, text, `drain: b6 finished \d+ requests in flight when the client saw it draining, then got 0 new ones`)
	if n, _ := strconv.Atoi(mustMatch(t, text, `answers by backend: .*b6 (\d+)`)[1]); n < 10 {
		t.Errorf("the new backend answered %d requests, want traffic to reach it", n)
	}
	// The surge: the client's share of the flooded backend falls while
	// it reports the queue, and the backend is back afterwards (its share,
	// or its usual cost when a faster backend took the traffic meanwhile).
	surge := mustMatch(t, text, `the client's share of it went (\d+)% -> (\d+)%(?: -> back|; back in rotation)`)
	before, _ := strconv.Atoi(surge[1])
	during, _ := strconv.Atoi(surge[2])
	if during*2 > before {
		t.Errorf("during the surge the client kept %d%% of its requests on the flooded backend (%d%% before), want under half", during, before)
	}
	serials := mustMatch(t, text, `new handshakes present serial (\w+) \(was (\w+)\)`)
	if serials[1] == serials[2] {
		t.Errorf("new handshakes present serial %s, the same as before the rotation", serials[1])
	}
	// The table was printed plainly, once a second, with the columns the
	// README describes, and no ANSI escapes.
	if n := strings.Count(text, "BACKEND  DELAY"); n < 5 {
		t.Errorf("%d tables printed, want one a second", n)
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("ANSI escapes written to a non-terminal")
	}
	dir := mustMatch(t, text, `data in (\S+)\)`)[1]
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary directory %s left behind (stat: %v)", dir, err)
	}
}

// TestQuickstartRejectsBadFlags checks that a bad flag exits 2 with a
// message naming it, before anything starts.
func TestQuickstartRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-duration", "1s"}, "-duration 1s: want at least 5s"},
		{[]string{"-ttl", "100ms"}, "-ttl 100ms: want at least 1s"},
		{[]string{"-workers", "0"}, "-workers 0"},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var out bytes.Buffer
		if code := run(context.Background(), tc.args, &out); code != 2 {
			t.Errorf("run(%q) = %d, want 2", tc.args, code)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("run(%q) printed %q, want it to mention %q", tc.args, out.String(), tc.want)
		}
	}
}

func mustMatch(t *testing.T, text, expr string) []string {
	t.Helper()
	m := regexp.MustCompile(expr).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("output has no match for %q", expr)
	}
	return m
}
