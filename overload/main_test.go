package overload_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/smartroute/smartroute/internal/testbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testbackend.IgnoredGoroutines()...)
}
