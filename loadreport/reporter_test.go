package loadreport_test

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartroute/smartroute/loadreport"
)

func TestReporterSettersAndSnapshot(t *testing.T) {
	var r loadreport.Reporter // the zero value works
	if s := r.Snapshot(); s.Has != loadreport.FieldRIF || s.RIF != 0 {
		t.Fatalf("zero Reporter snapshot %+v, want RIF 0 only", s)
	}
	r.SetCapacity(8)
	r.SetCPUUtilization(0.3)
	r.SetMemUtilization(0.6)
	r.SetAppUtilization(1.2) // over a soft limit is allowed
	s := r.Snapshot()
	want := loadreport.FieldRIF | loadreport.FieldCapacity | loadreport.FieldCPUUtilization | loadreport.FieldMemUtilization | loadreport.FieldAppUtilization
	if s.Has != want || s.Capacity != 8 || s.CPUUtilization != 0.3 || s.MemUtilization != 0.6 || s.AppUtilization != 1.2 {
		t.Fatalf("snapshot %+v", s)
	}
	sm := r.ServerMetrics()
	if sm.NamedMetrics["rif"] != 0 || sm.NamedMetrics["capacity"] != 8 || sm.CPUUtilization != 0.3 || sm.QPS != -1 || sm.EPS != -1 {
		t.Fatalf("ServerMetrics %+v", sm)
	}
	r.SetCapacity(0)
	r.SetCPUUtilization(-1)
	r.SetMemUtilization(math.NaN())
	r.SetAppUtilization(math.Inf(1))
	if s := r.Snapshot(); s.Has != loadreport.FieldRIF {
		t.Fatalf("after removing every field: %+v", s)
	}
	if sm := r.ServerMetrics(); sm.CPUUtilization != -1 || sm.AppUtilization != -1 || len(sm.NamedMetrics) != 1 {
		t.Fatalf("ServerMetrics after removal %+v", sm)
	}
}

func TestReporterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rep := loadreport.New(loadreport.WithRegisterer(reg))
	inFlight := func(n int) error {
		return testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP smartroute_loadreport_requests_in_flight Requests in flight counted by the load reporter (the RIF it reports).
# TYPE smartroute_loadreport_requests_in_flight gauge
smartroute_loadreport_requests_in_flight %d
`, n)), "smartroute_loadreport_requests_in_flight")
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	h := rep.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	url, c := serveHTTP(t, protocols[0], h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	if err := inFlight(1); err != nil {
		t.Fatalf("with one request held: %v", err)
	}
	close(release)
	<-done
	waitFor(t, 10*time.Second, "the gauge to fall to 0", func() bool { return inFlight(0) == nil })
}
