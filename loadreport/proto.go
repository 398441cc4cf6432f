package loadreport

import (
	"encoding/base64"
	"fmt"
	"maps"
	"strings"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// FromProto converts an ORCA OrcaLoadReport, as grpc-go hands it to a
// balancer in balancer.DoneInfo.ServerLoad or an OOB listener, into a
// Report received at received. proto3 does not tell an unset double from
// zero: a top-level field is present when it is not zero, a named metric
// (RIF, capacity) whenever it is in the map. It allocates only for map
// entries other than RIF and capacity. Values that are NaN, infinite or
// negative, and empty or overlong names, are refused with an error
// wrapping ErrMalformed. A nil p is ErrNoReport.
func FromProto(p *v3orcapb.OrcaLoadReport, received time.Time) (Report, error) {
	if p == nil {
		return Report{}, ErrNoReport
	}
	r := Report{Received: received}
	if err := fromProto(p, &r); err != nil {
		return Report{}, err
	}
	return r, nil
}

func fromProto(p *v3orcapb.OrcaLoadReport, r *Report) error {
	for _, f := range [...]struct {
		bit Fields
		v   float64
	}{
		{FieldCPUUtilization, p.GetCpuUtilization()},
		{FieldMemUtilization, p.GetMemUtilization()},
		{FieldAppUtilization, p.GetApplicationUtilization()},
		{FieldRPS, p.GetRpsFractional()},
		{FieldEPS, p.GetEps()},
	} {
		if f.v == 0 {
			continue
		}
		if err := checkValue(f.v); err != nil {
			return malformedf("field %s: %v", scalarName(f.bit), err)
		}
		r.Has |= f.bit
		*r.field(f.bit) = f.v
	}
	for name, v := range p.GetNamedMetrics() {
		if err := checkEntry(prefixNamed, name, v); err != nil {
			return err
		}
		switch name {
		case MetricRIF:
			r.Has |= FieldRIF
			r.RIF = v
		case MetricCapacity:
			r.Has |= FieldCapacity
			r.Capacity = v
		default:
			if r.NamedMetrics == nil {
				r.NamedMetrics = make(map[string]float64, len(p.GetNamedMetrics()))
			}
			r.NamedMetrics[name] = v
		}
	}
	var err error
	if r.Utilization, err = copyEntries(prefixUtilization, p.GetUtilization()); err != nil {
		return err
	}
	r.RequestCost, err = copyEntries(prefixCost, p.GetRequestCost())
	return err
}

// copyEntries checks and copies an ORCA map; nil when empty.
func copyEntries(prefix string, m map[string]float64) (map[string]float64, error) {
	if len(m) == 0 {
		return nil, nil
	}
	for name, v := range m {
		if err := checkEntry(prefix, name, v); err != nil {
			return nil, err
		}
	}
	return maps.Clone(m), nil
}

func checkEntry(prefix, name string, v float64) error {
	if name == "" {
		return malformedf("metric %s with an empty name", strings.TrimSuffix(prefix, "."))
	}
	if len(name) > maxNameLen {
		return malformedf("metric %s%s: name longer than %d bytes", prefix, quote(name), maxNameLen)
	}
	if err := checkValue(v); err != nil {
		return malformedf("metric %s%s: %v", prefix, quote(name), err)
	}
	return nil
}

func scalarName(bit Fields) string {
	for _, s := range scalars {
		if s.bit == bit {
			return s.name
		}
	}
	return "?"
}

// Proto returns r as an OrcaLoadReport (RIF and capacity as named
// metrics). Received is not part of it.
func (r Report) Proto() *v3orcapb.OrcaLoadReport {
	p := &v3orcapb.OrcaLoadReport{
		CpuUtilization:         r.CPUUtilization,
		MemUtilization:         r.MemUtilization,
		ApplicationUtilization: r.AppUtilization,
		RpsFractional:          r.RPS,
		Eps:                    r.EPS,
		Utilization:            maps.Clone(r.Utilization),
		RequestCost:            maps.Clone(r.RequestCost),
	}
	if r.Has&(FieldRIF|FieldCapacity) != 0 || len(r.NamedMetrics) > 0 {
		p.NamedMetrics = make(map[string]float64, len(r.NamedMetrics)+2)
		maps.Copy(p.NamedMetrics, r.NamedMetrics)
		if r.Has&FieldRIF != 0 {
			p.NamedMetrics[MetricRIF] = r.RIF
		}
		if r.Has&FieldCapacity != 0 {
			p.NamedMetrics[MetricCapacity] = r.Capacity
		}
	}
	return p
}

// FromMetadata decodes the per-RPC load report in gRPC metadata (the
// trailer key endpoint-load-metrics-bin that grpc-go's orca package
// writes), received at received. It returns ErrNoReport when md has none
// and an error wrapping ErrMalformed when there are several or it does
// not decode.
func FromMetadata(md metadata.MD, received time.Time) (Report, error) {
	vs := md[TrailerKey]
	switch {
	case len(vs) == 0:
		return Report{}, ErrNoReport
	case len(vs) > 1:
		return Report{}, malformedf("%d values under %s, want one", len(vs), TrailerKey)
	}
	r := Report{Received: received}
	if err := parseBinary([]byte(vs[0]), &r); err != nil {
		return Report{}, err
	}
	return r, nil
}

// parseJSON decodes the proto3 JSON of an OrcaLoadReport. Unknown fields
// are refused, as Envoy does.
func parseJSON(s string, r *Report) error {
	var p v3orcapb.OrcaLoadReport
	if err := protojson.Unmarshal([]byte(s), &p); err != nil {
		return malformedf("JSON: %v", err)
	}
	return fromProto(&p, r)
}

// parseBase64 decodes a base64 OrcaLoadReport, with or without padding
// (grpc-go and others omit it). An empty value is an empty report, as the
// empty message encodes to nothing.
func parseBase64(s string, r *Report) error {
	s = trimOWS(s)
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return malformedf("BIN: %v", err)
	}
	return parseBinary(b, r)
}

func parseBinary(b []byte, r *Report) error {
	var p v3orcapb.OrcaLoadReport
	if err := proto.Unmarshal(b, &p); err != nil {
		return malformedf("binary OrcaLoadReport: %v", err)
	}
	return fromProto(&p, r)
}

// Header returns r encoded as the value of an endpoint-load-metrics
// header in format f, for servers that write the header themselves (the
// Reporter does it for you). TEXT fails for map names the format cannot
// carry (see ParseHeader); JSON and BIN carry any report, but as proto3
// they drop top-level fields that are zero.
func (r Report) Header(f Format) (string, error) {
	b, err := appendHeader(nil, r, f)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendHeader appends r in format f, prefix included.
func appendHeader(b []byte, r Report, f Format) ([]byte, error) {
	switch f {
	case FormatText:
		return appendText(b, r)
	case FormatJSON:
		if r.NamedMetrics == nil && r.Utilization == nil && r.RequestCost == nil {
			return appendJSONScalars(b, r), nil
		}
		j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r.Proto())
		if err != nil {
			return b, fmt.Errorf("loadreport: JSON: %w", err)
		}
		b = append(b, "JSON "...)
		return append(b, j...), nil
	case FormatBinary:
		p, err := proto.Marshal(r.Proto())
		if err != nil {
			return b, fmt.Errorf("loadreport: BIN: %w", err)
		}
		b = append(b, "BIN "...)
		return base64.StdEncoding.AppendEncode(b, p), nil
	}
	return b, fmt.Errorf("loadreport: unknown format %v", f)
}

// appendJSONScalars writes the JSON of a report without map entries by
// hand: the Reporter writes one per response and protojson would allocate.
func appendJSONScalars(b []byte, r Report) []byte {
	b = append(b, "JSON {"...)
	n := len(b)
	if r.Has&(FieldRIF|FieldCapacity) != 0 {
		b = append(b, `"named_metrics":{`...)
		if r.Has&FieldRIF != 0 {
			b = append(b, `"`+MetricRIF+`":`...)
			b = appendFloat(b, r.RIF)
		}
		if r.Has&FieldCapacity != 0 {
			if r.Has&FieldRIF != 0 {
				b = append(b, ',')
			}
			b = append(b, `"`+MetricCapacity+`":`...)
			b = appendFloat(b, r.Capacity)
		}
		b = append(b, '}')
	}
	for _, s := range scalars {
		if r.Has&s.bit == 0 {
			continue
		}
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s.name...)
		b = append(b, `":`...)
		b = appendFloat(b, *r.field(s.bit))
	}
	return append(b, '}')
}
