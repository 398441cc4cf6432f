package cliutil

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/smartroute/smartroute/internal/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.IgnoredGoroutines()...)
}
