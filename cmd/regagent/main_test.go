package main

import (
	"os"
	"testing"

	"github.com/smartroute/smartroute/internal/leakcheck"
)

// envRunAsAgent makes the test binary run as regagent itself, so that the
// process tests exercise main (signals, exit codes) without a go build.
const envRunAsAgent = "REGAGENT_TEST_RUN_AS_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(envRunAsAgent) == "1" {
		os.Args = append([]string{"regagent"}, os.Args[1:]...)
		main()
		return
	}
	leakcheck.VerifyTestMain(m)
}
