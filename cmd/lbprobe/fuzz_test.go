package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzArgs feeds arbitrary command lines to run with a cancelled context,
// so that nothing is probed or waited for: whatever the input, lbprobe
// must not panic, must exit with a documented code, and must report a
// usage error as one line followed by the usage.
func FuzzArgs(f *testing.F) {
	for _, seed := range []string{
		"",
		"-h",
		"endpoints",
		"endpoints static:///127.0.0.1:1 --count 1 --json",
		"endpoints etcd:///api --etcd-endpoints 127.0.0.1:1 --etcd-dial-timeout 1ms",
		"endpoints dns:///api.example.test:443 --check tls --check-server-name x",
		"endpoints dns+srv:///_api._tcp.example.test --policy p2c",
		"endpoints consul:///x",
		"endpoints static:///10.0.0.1 --count -1",
		"pick static:///127.0.0.1:1 -n 10 --policy round_robin",
		"pick -n 1e9 static:///127.0.0.1:1",
		"watch static:///127.0.0.1:1 --interval 0s",
		"watch -- -x",
		"certs",
		"certs list --kek-id x",
		"certs verify ca",
		"certs put web --cert a --key b --allow-plaintext-keys",
		"certs put --ca /nonexistent",
		"--bogus",
		"endpoints --etcd-endpoints= etcd:///api",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var out, errb bytes.Buffer
		code := run(ctx, args, &out, &errb)
		switch code {
		case exitOK, exitSome, exitEtcd, exitNone, exitFailure:
		case exitUsage:
			lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "lbprobe") || !strings.HasPrefix(lines[1], "usage: lbprobe") {
				t.Errorf("usage error for %q is not one line and the usage:\n%s", args, errb.String())
			}
		default:
			t.Errorf("exit code %d for %q", code, args)
		}
	})
}
