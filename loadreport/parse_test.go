package loadreport_test

import (
	"encoding/base64"
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/smartroute/smartroute/loadreport"
)

// sameReport compares everything but Received.
func sameReport(a, b loadreport.Report) bool {
	a.Received, b.Received = time.Time{}, time.Time{}
	return a.RIF == b.RIF && a.Capacity == b.Capacity && a.CPUUtilization == b.CPUUtilization &&
		a.MemUtilization == b.MemUtilization && a.AppUtilization == b.AppUtilization &&
		a.RPS == b.RPS && a.EPS == b.EPS && a.Has == b.Has &&
		maps.Equal(a.NamedMetrics, b.NamedMetrics) && maps.Equal(a.Utilization, b.Utilization) &&
		maps.Equal(a.RequestCost, b.RequestCost)
}

// full is a report with every field, as the JSON and BIN cases encode it.
var full = loadreport.Report{
	RIF: 3, Capacity: 8, CPUUtilization: 0.7, MemUtilization: 0.9, AppUtilization: 0.8,
	RPS: 1000, EPS: 2,
	Has: loadreport.FieldRIF | loadreport.FieldCapacity | loadreport.FieldCPUUtilization |
		loadreport.FieldMemUtilization | loadreport.FieldAppUtilization | loadreport.FieldRPS | loadreport.FieldEPS,
	NamedMetrics: map[string]float64{"foo": 123},
	Utilization:  map[string]float64{"total": 0.5},
	RequestCost:  map[string]float64{"db": 4},
}

func binValue(t testing.TB, p *v3orcapb.OrcaLoadReport, enc *base64.Encoding) string {
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeToString(b)
}

func TestParseHeaderFormats(t *testing.T) {
	cases := []struct {
		name, value string
		want        loadreport.Report
	}{
		{"text", "TEXT named_metrics.rif=3,named_metrics.capacity=8,cpu_utilization=0.7,mem_utilization=0.9," +
			"application_utilization=0.8,rps_fractional=1000,eps=2,named_metrics.foo=123,utilization.total=0.5,request_cost.db=4", full},
		{"text with colons and spaces, as Envoy and vLLM write it", "TEXT  named_metrics.rif:3 , cpu_utilization : 0.25,, ",
			loadreport.Report{RIF: 3, CPUUtilization: 0.25, Has: loadreport.FieldRIF | loadreport.FieldCPUUtilization}},
		{"text zero rif is present", "TEXT named_metrics.rif=0",
			loadreport.Report{Has: loadreport.FieldRIF}},
		{"text empty list", "TEXT ", loadreport.Report{}},
		{"bin empty message", "BIN ", loadreport.Report{}},
		{"text exponent", "TEXT named_metrics.rif=1e2", loadreport.Report{RIF: 100, Has: loadreport.FieldRIF}},
		{"json", `JSON {"named_metrics":{"rif":3,"capacity":8,"foo":123},"cpu_utilization":0.7,"mem_utilization":0.9,` +
			`"application_utilization":0.8,"rps_fractional":1000,"eps":2,"utilization":{"total":0.5},"request_cost":{"db":4}}`, full},
		{"json camel case", `JSON {"namedMetrics":{"rif":2},"cpuUtilization":0.5}`,
			loadreport.Report{RIF: 2, CPUUtilization: 0.5, Has: loadreport.FieldRIF | loadreport.FieldCPUUtilization}},
		{"bin padded", "BIN " + binValue(t, full.Proto(), base64.StdEncoding), full},
		{"bin unpadded", "BIN " + binValue(t, full.Proto(), base64.RawStdEncoding), full},
		// Captured from a grpc-go backend by Envoy's ORCA parser tests.
		{"bin from grpc-go", "BIN CQAAAAAAAOA/MQAAAAAAAFlAOQAAAAAAAABAQg4KA3JpZhEAAAAAAAAQQA",
			loadreport.Report{RIF: 4, CPUUtilization: 0.5, RPS: 100, EPS: 2,
				Has: loadreport.FieldRIF | loadreport.FieldCPUUtilization | loadreport.FieldRPS | loadreport.FieldEPS}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := time.Now()
			got, err := loadreport.ParseHeader(c.value)
			if err != nil {
				t.Fatalf("ParseHeader(%q): %v", c.value, err)
			}
			if !sameReport(got, c.want) {
				t.Fatalf("ParseHeader(%q)\n got %+v\nwant %+v", c.value, got, c.want)
			}
			if got.Received.Before(before) || got.Received.After(time.Now()) {
				t.Fatalf("Received = %v, want the time of the call", got.Received)
			}
		})
	}
}

func TestParseHeaderRefusesBadInput(t *testing.T) {
	cases := []struct{ value, mention string }{
		{"", `unsupported format ""`},
		{"TEXT", `unsupported format "TEXT"`},
		{"text named_metrics.rif=1", `unsupported format "text"`},
		{"XML <rif/>", `unsupported format "XML"`},
		{"TEXT named_metrics.rif", `element "named_metrics.rif" is not key=value`},
		{"TEXT named_metrics.rif=", `metric "named_metrics.rif" has no value`},
		{"TEXT =3", `empty metric name`},
		{"TEXT named_metrics.rif=abc", `value "abc" is not a decimal number`},
		{"TEXT named_metrics.rif=NaN", `value "NaN" is not a decimal number`},
		{"TEXT named_metrics.rif=Inf", `value "Inf" is not a decimal number`},
		{"TEXT named_metrics.rif=0x10", `value "0x10" is not a decimal number`},
		{"TEXT named_metrics.rif=1e999", `value "1e999" is not a finite decimal number`},
		{"TEXT named_metrics.rif=1.2.3", `value "1.2.3" is not a finite decimal number`},
		{"TEXT named_metrics.rif=-1", `value -1 is negative`},
		{`TEXT cpu_utilization="0.7"`, `value "\"0.7\"" is not a decimal number`},
		{"TEXT named_metrics.rif=1,named_metrics.rif=2", `duplicate metric "named_metrics.rif"`},
		{"TEXT named_metrics.x=1,named_metrics.x=2", `duplicate metric "named_metrics.x"`},
		{"TEXT rif=3", `unsupported metric name "rif"`},
		{"TEXT rps=3", `unsupported metric name "rps"`},
		{"TEXT named_metrics.=3", `metric "named_metrics.": empty name`},
		{"TEXT utilization.a\x01b=3", `name holds the byte '\x01'`},
		{"TEXT named_metrics." + strings.Repeat("n", 300) + "=1", "name longer than 256 bytes"},
		{"JSON {", "JSON:"},
		{`JSON {"cpu_utilization":"high"}`, "JSON:"},
		{`JSON {"unknown_field":1}`, "JSON:"},
		{`JSON {"cpu_utilization":-0.5}`, "field cpu_utilization: value -0.5 is negative"},
		{`JSON {"cpu_utilization":"NaN"}`, "field cpu_utilization: value is NaN"},
		{`JSON {"named_metrics":{"rif":"Infinity"}}`, `metric named_metrics."rif": value is infinite`},
		{`JSON {"named_metrics":{"":1}}`, "metric named_metrics with an empty name"},
		{"BIN !!!!", "BIN: illegal base64"},
		{"BIN " + base64.StdEncoding.EncodeToString([]byte{0xff, 0xff}), "binary OrcaLoadReport"},
		{"TEXT " + strings.Repeat("x", 17<<10), "more than 16384"},
	}
	for _, c := range cases {
		_, err := loadreport.ParseHeader(c.value)
		if err == nil {
			t.Errorf("ParseHeader(%q) succeeded", c.value)
			continue
		}
		if !errors.Is(err, loadreport.ErrMalformed) {
			t.Errorf("ParseHeader(%q) = %v, does not wrap ErrMalformed", c.value, err)
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ParseHeader(%q) = %q, want it to mention %q", c.value, err, c.mention)
		}
	}
}

func TestFromHeader(t *testing.T) {
	at := time.Unix(1700000000, 0)
	bin := binValue(t, (&loadreport.Report{RIF: 5, Has: loadreport.FieldRIF}).Proto(), base64.RawStdEncoding)
	cases := []struct {
		name    string
		h       http.Header
		wantRIF float64
		wantErr error
	}{
		{"absent", http.Header{"Content-Type": {"text/plain"}}, 0, loadreport.ErrNoReport},
		{"text", http.Header{loadreport.HeaderName: {"TEXT named_metrics.rif=2"}}, 2, nil},
		{"legacy bin header", http.Header{loadreport.HeaderNameBin: {bin}}, 5, nil},
		{"repeated", http.Header{loadreport.HeaderName: {"TEXT named_metrics.rif=2", "TEXT named_metrics.rif=3"}}, 0, loadreport.ErrMalformed},
		{"both", http.Header{loadreport.HeaderName: {"TEXT named_metrics.rif=2"}, loadreport.HeaderNameBin: {bin}}, 0, loadreport.ErrMalformed},
		{"bad bin", http.Header{loadreport.HeaderNameBin: {"%%%"}}, 0, loadreport.ErrMalformed},
	}
	for _, c := range cases {
		r, err := loadreport.FromHeader(c.h, at)
		if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
			t.Errorf("%s: FromHeader error = %v, want %v", c.name, err, c.wantErr)
			continue
		}
		if err == nil && (r.RIF != c.wantRIF || !r.HasRIF() || !r.Received.Equal(at)) {
			t.Errorf("%s: FromHeader = %+v, want RIF %v received %v", c.name, r, c.wantRIF, at)
		}
	}
}

func TestFromMetadataAndProto(t *testing.T) {
	at := time.Now()
	b, err := proto.Marshal(full.Proto())
	if err != nil {
		t.Fatal(err)
	}
	r, err := loadreport.FromMetadata(metadata.Pairs(loadreport.TrailerKey, string(b)), at)
	if err != nil || !sameReport(r, full) || !r.Received.Equal(at) {
		t.Fatalf("FromMetadata = %+v, %v; want %+v", r, err, full)
	}
	if _, err := loadreport.FromMetadata(metadata.Pairs("other", "x"), at); !errors.Is(err, loadreport.ErrNoReport) {
		t.Fatalf("FromMetadata without a report = %v, want ErrNoReport", err)
	}
	two := metadata.Pairs(loadreport.TrailerKey, string(b), loadreport.TrailerKey, string(b))
	if _, err := loadreport.FromMetadata(two, at); !errors.Is(err, loadreport.ErrMalformed) {
		t.Fatalf("FromMetadata with two reports = %v, want ErrMalformed", err)
	}
	if _, err := loadreport.FromProto(nil, at); !errors.Is(err, loadreport.ErrNoReport) {
		t.Fatalf("FromProto(nil) = %v, want ErrNoReport", err)
	}
	bad := &v3orcapb.OrcaLoadReport{NamedMetrics: map[string]float64{"rif": -3}}
	if _, err := loadreport.FromProto(bad, at); !errors.Is(err, loadreport.ErrMalformed) {
		t.Fatalf("FromProto with a negative RIF = %v, want ErrMalformed", err)
	}
}

func TestHeaderRoundTrips(t *testing.T) {
	for _, f := range []loadreport.Format{loadreport.FormatText, loadreport.FormatJSON, loadreport.FormatBinary} {
		for _, r := range []loadreport.Report{full, {RIF: 0, Has: loadreport.FieldRIF}, {RIF: 2.5, Capacity: 4, Has: loadreport.FieldRIF | loadreport.FieldCapacity}} {
			v, err := r.Header(f)
			if err != nil {
				t.Fatalf("%v: Header(%+v): %v", f, r, err)
			}
			if !strings.HasPrefix(v, f.String()+" ") {
				t.Fatalf("%v header %q lacks its prefix", f, v)
			}
			got, err := loadreport.ParseHeader(v)
			if err != nil || !sameReport(got, r) {
				t.Fatalf("%v: %q parsed to %+v, %v; want %+v", f, v, got, err, r)
			}
		}
	}
	bad := loadreport.Report{NamedMetrics: map[string]float64{"a,b": 1}}
	if _, err := bad.Header(loadreport.FormatText); err == nil {
		t.Fatal("Header(TEXT) wrote a name with a comma")
	}
	if s := full.String(); !strings.HasPrefix(s, "TEXT named_metrics.rif=3,named_metrics.capacity=8,cpu_utilization=0.7") {
		t.Fatalf("String() = %q", s)
	}
}

func TestReportAge(t *testing.T) {
	now := time.Now()
	r := loadreport.Report{Received: now.Add(-time.Second)}
	if got := r.Age(now); got != time.Second {
		t.Fatalf("Age = %v, want 1s", got)
	}
	if got := r.Age(now.Add(-2 * time.Second)); got != 0 {
		t.Fatalf("Age before receipt = %v, want 0", got)
	}
	if !(loadreport.Report{}).IsZero() || r.IsZero() {
		t.Fatal("IsZero is wrong")
	}
}
