package loadreport

import (
	"errors"
	"strconv"
	"time"
)

// The names under which the load is carried.
const (
	// HeaderName is the HTTP response header of ORCA load reports
	// ("endpoint-load-metrics", canonical form), whose value starts with
	// its format: "TEXT ", "JSON " or "BIN ".
	HeaderName = "Endpoint-Load-Metrics"
	// HeaderNameBin is the legacy HTTP header that carries a base64
	// OrcaLoadReport without a format prefix, as gRPC does in trailers.
	HeaderNameBin = "Endpoint-Load-Metrics-Bin"
	// TrailerKey is the gRPC metadata key of per-RPC reports (grpc-go's
	// orca package sends them in trailers; the value is the binary
	// OrcaLoadReport).
	TrailerKey = "endpoint-load-metrics-bin"

	// MetricRIF is the named metric that carries requests in flight:
	// "named_metrics.rif" in the TEXT format. ORCA has no standard field
	// for it; "rif" is the name Prequal (NSDI 2024) gives the signal and
	// the one seen on the wire from grpc-go backends (Envoy's ORCA parser
	// tests decode a grpc-go report with named_metrics {"rif": 4}).
	MetricRIF = "rif"
	// MetricCapacity is the named metric that carries the capacity hint:
	// how many requests the server works on at once before further ones
	// queue ("named_metrics.capacity").
	MetricCapacity = "capacity"
)

var (
	// ErrNoReport is returned by the decoders when the response carries
	// no load report at all.
	ErrNoReport = errors.New("loadreport: no load report")
	// ErrMalformed is wrapped by every error about a report that is there
	// but cannot be used.
	ErrMalformed = errors.New("loadreport: malformed load report")
)

// Fields is a set of the scalar fields present in a Report.
type Fields uint16

// The scalar fields of a Report.
const (
	FieldRIF Fields = 1 << iota
	FieldCapacity
	FieldCPUUtilization
	FieldMemUtilization
	FieldAppUtilization
	FieldRPS
	FieldEPS
)

// Has reports whether every field of x is in f.
func (f Fields) Has(x Fields) bool { return f&x == x }

// Report is one load report of one endpoint. It is a value: copying it is
// cheap and reading a field needs no allocation. The maps are nil unless
// the report carried such entries; treat them as read-only.
//
// ORCA fields are doubles and so are these. Values are finite and never
// negative (the decoders refuse others). A field is present when its bit
// is in Has: zero is a valid RIF.
type Report struct {
	// Received is when the report arrived (set by the decoders, or by the
	// caller of FromProto). The zero time means "no report".
	Received time.Time

	// RIF is the number of requests in flight at the server when it made
	// the report, not counting the request being answered (nor, for a
	// probe, the probe): the load a new request would join.
	RIF float64
	// Capacity is how many requests the server works on at once before
	// further ones queue (a worker pool size, a concurrency limit).
	Capacity float64
	// CPUUtilization, MemUtilization and AppUtilization are ORCA's
	// cpu_utilization, mem_utilization and application_utilization.
	// Utilizations may exceed 1 (over a soft limit).
	CPUUtilization, MemUtilization, AppUtilization float64
	// RPS and EPS are ORCA's rps_fractional (requests per second) and eps
	// (errors per second).
	RPS, EPS float64

	// Has says which of the scalar fields above are present.
	Has Fields

	// NamedMetrics holds ORCA named_metrics other than MetricRIF and
	// MetricCapacity; Utilization and RequestCost hold ORCA's utilization
	// and request_cost maps.
	NamedMetrics, Utilization, RequestCost map[string]float64
}

// IsZero reports whether r is the zero Report: no report was received.
func (r Report) IsZero() bool {
	return r.Received.IsZero() && r.Has == 0 && r.NamedMetrics == nil && r.Utilization == nil && r.RequestCost == nil
}

// HasRIF reports whether r carries requests in flight.
func (r Report) HasRIF() bool { return r.Has&FieldRIF != 0 }

// Age returns how old r is at now (zero for a report from the future).
func (r Report) Age(now time.Time) time.Duration {
	return max(now.Sub(r.Received), 0)
}

// String returns r in the TEXT header format, for logs.
func (r Report) String() string {
	b, err := appendText(nil, r)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// scalar names one top-level ORCA field: its bit and its TEXT/JSON name
// (the proto field name).
type scalar struct {
	bit  Fields
	name string
}

// scalars are the top-level ORCA fields, in the order they are written.
// RIF and capacity are named metrics and written separately.
var scalars = [...]scalar{
	{FieldCPUUtilization, "cpu_utilization"},
	{FieldMemUtilization, "mem_utilization"},
	{FieldAppUtilization, "application_utilization"},
	{FieldRPS, "rps_fractional"},
	{FieldEPS, "eps"},
}

// field returns a pointer to the scalar field of bit (one bit), nil for
// an unknown bit.
func (r *Report) field(bit Fields) *float64 {
	switch bit {
	case FieldRIF:
		return &r.RIF
	case FieldCapacity:
		return &r.Capacity
	case FieldCPUUtilization:
		return &r.CPUUtilization
	case FieldMemUtilization:
		return &r.MemUtilization
	case FieldAppUtilization:
		return &r.AppUtilization
	case FieldRPS:
		return &r.RPS
	case FieldEPS:
		return &r.EPS
	}
	return nil
}

// Format is an encoding of the endpoint-load-metrics header.
type Format uint8

// The header formats of Envoy's ORCA parser.
const (
	// FormatText is "TEXT key=value,...": cheap to write and to read.
	FormatText Format = iota
	// FormatJSON is "JSON {...}", the proto3 JSON of an OrcaLoadReport.
	FormatJSON
	// FormatBinary is "BIN <base64 OrcaLoadReport>".
	FormatBinary
)

// String returns "TEXT", "JSON" or "BIN".
func (f Format) String() string {
	switch f {
	case FormatText:
		return "TEXT"
	case FormatJSON:
		return "JSON"
	case FormatBinary:
		return "BIN"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}
