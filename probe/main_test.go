package probe

import (
	"testing"

	"github.com/smartroute/smartroute/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
