package main

import (
	"os"
	"testing"

	"github.com/smartroute/smartroute/internal/leakcheck"
)

// envRunAsMain makes the test binary run as lbprobe itself, so that the
// process tests exercise main (exit codes, output streams) without a go
// build.
const envRunAsMain = "LBPROBE_TEST_RUN_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunAsMain) == "1" {
		os.Args = append([]string{"lbprobe"}, os.Args[1:]...)
		main()
		return
	}
	leakcheck.VerifyTestMain(m)
}
