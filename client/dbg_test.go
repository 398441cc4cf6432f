package client_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/internal/testbackend"
)

func TestDbgReports(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	bs := backends(t, 3, 3*time.Millisecond, testbackend.WithCapacity(2), testbackend.WithLoadReport())
	c := staticClient(t, endpointsOf(addrs(bs)...), client.WithoutProbe())
	load(ctx, c, 200, 4, nil)
	for _, e := range c.Endpoints() {
		fmt.Printf("%s rtt=%v exp=%v infl=%d rif=%v cap=%v age=%v\n", e.Addr, e.RTT, e.Expected, e.InFlight, e.ReportedInFlight, e.ReportedCapacity, e.ReportAge)
	}
}
