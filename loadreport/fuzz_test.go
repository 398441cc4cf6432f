package loadreport_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/smartroute/smartroute/loadreport"
)

// FuzzParseHeader feeds arbitrary header values to ParseHeader. It must
// never panic; whatever it accepts holds only finite, non-negative values,
// and survives being written again in the format it came in (TEXT, JSON,
// BIN) and parsed back unchanged: a client never holds a report a server
// could not send. Seeds are here and in testdata/fuzz/FuzzParseHeader.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"TEXT named_metrics.rif=3,named_metrics.capacity=8,cpu_utilization=0.7",
		"TEXT named_metrics.rif:3, mem_utilization : 0.2,,",
		"TEXT named_metrics.foo=1,utilization.total=0.5,request_cost.db=4,eps=1,rps_fractional=2.5e3",
		"TEXT named_metrics.rif=-1",
		"TEXT named_metrics.rif=1,named_metrics.rif=1",
		"TEXT =",
		`JSON {"named_metrics":{"rif":3},"application_utilization":0.8}`,
		`JSON {"namedMetrics":{"x":1},"utilization":{"":1}}`,
		`JSON {"cpu_utilization":"NaN"}`,
		"BIN CQAAAAAAAOA/MQAAAAAAAFlAOQAAAAAAAABAQg4KA3JpZhEAAAAAAAAQQA",
		"BIN CQAAAAAAAOA/MQAAAAAAAFlAOQAAAAAAAABAQg4KA3JpZhEAAAAAAAAQQA==",
		"BIN ////",
		"XML x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := loadreport.ParseHeader(v)
		if err != nil {
			if !errors.Is(err, loadreport.ErrMalformed) {
				t.Fatalf("ParseHeader(%q) = %v, not ErrMalformed", v, err)
			}
			return
		}
		for _, x := range []float64{r.RIF, r.Capacity, r.CPUUtilization, r.MemUtilization, r.AppUtilization, r.RPS, r.EPS} {
			if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				t.Fatalf("ParseHeader(%q) accepted the value %v: %+v", v, x, r)
			}
		}
		format := loadreport.FormatText
		switch strings.TrimLeft(v, " \t")[:3] {
		case "JSO":
			format = loadreport.FormatJSON
		case "BIN":
			format = loadreport.FormatBinary
		}
		again, err := r.Header(format)
		if err != nil {
			t.Fatalf("ParseHeader(%q) accepted %+v, but Header(%v) refuses it: %v", v, r, format, err)
		}
		back, err := loadreport.ParseHeader(again)
		if err != nil {
			t.Fatalf("round trip of %q through %q failed: %v", v, again, err)
		}
		if !sameReport(back, r) {
			t.Fatalf("round trip of %q through %q changed\n%+v into\n%+v", v, again, r, back)
		}
	})
}
