package loadreport_test

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/smartroute/smartroute/loadreport"
)

// The client decodes one header per response: the TEXT report of known
// fields must cost no allocation.
func BenchmarkParseHeader(b *testing.B) {
	at := time.Now()
	for _, c := range []struct{ name, value string }{
		{"text-rif", "TEXT named_metrics.rif=3"},
		{"text-known", "TEXT named_metrics.rif=3,named_metrics.capacity=8,cpu_utilization=0.42,application_utilization=0.375,rps_fractional=1250.5"},
		{"text-extra", "TEXT named_metrics.rif=3,named_metrics.queue=7"},
		{"json", `JSON {"named_metrics":{"rif":3,"capacity":8},"cpu_utilization":0.42}`},
		{"bin", "BIN " + binValue(b, (&loadreport.Report{RIF: 3, Capacity: 8, CPUUtilization: 0.42,
			Has: loadreport.FieldRIF | loadreport.FieldCapacity | loadreport.FieldCPUUtilization}).Proto(), base64.StdEncoding)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var rif float64
			for b.Loop() {
				r, err := loadreport.ParseHeaderAt(c.value, at)
				if err != nil {
					b.Fatal(err)
				}
				rif += r.RIF
			}
			if rif == 0 {
				b.Fatal("no RIF")
			}
		})
	}
}

func BenchmarkFromHeader(b *testing.B) {
	h := http.Header{loadreport.HeaderName: {"TEXT named_metrics.rif=3,named_metrics.capacity=8"}, "Content-Type": {"text/plain"}}
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadreport.FromHeader(h, at); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromProto(b *testing.B) {
	p := (&loadreport.Report{RIF: 3, Capacity: 8, RPS: 100, AppUtilization: 0.5,
		Has: loadreport.FieldRIF | loadreport.FieldCapacity | loadreport.FieldRPS | loadreport.FieldAppUtilization}).Proto()
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadreport.FromProto(p, at); err != nil {
			b.Fatal(err)
		}
	}
}

// nopWriter is the cheapest ResponseWriter, so that the benchmark measures
// the middleware.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkMiddleware is the server's cost per response: counting the
// request and writing the header.
func BenchmarkMiddleware(b *testing.B) {
	body := []byte("ok")
	for _, c := range []struct {
		name string
		opts []loadreport.Option
	}{
		{"text", []loadreport.Option{loadreport.WithCapacity(8)}},
		{"json", []loadreport.Option{loadreport.WithCapacity(8), loadreport.WithFormat(loadreport.FormatJSON)}},
		{"text-rate-window", []loadreport.Option{loadreport.WithCapacity(8), loadreport.WithRateWindow(time.Second)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := loadreport.New(c.opts...).Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write(body)
			}))
			req, _ := http.NewRequest(http.MethodGet, "/", nil)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.h.Get(loadreport.HeaderName) == "" {
				b.Fatal("no header")
			}
		})
	}
}
