package loadreport

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Prefixes of the map entries in the TEXT format.
const (
	prefixNamed       = "named_metrics."
	prefixUtilization = "utilization."
	prefixCost        = "request_cost."
)

// parseText decodes the list after "TEXT " into r: comma-separated
// key=value pairs (key:value is accepted too, as Envoy does), optional
// whitespace around elements, keys and values; empty elements are ignored
// (RFC 9110, 5.6.1). Known fields fill r without allocating; only other
// map entries allocate.
func parseText(s string, r *Report) error {
	for s != "" {
		var elem string
		if i := strings.IndexByte(s, ','); i >= 0 {
			elem, s = s[:i], s[i+1:]
		} else {
			elem, s = s, ""
		}
		elem = trimOWS(elem)
		if elem == "" {
			continue
		}
		sep := strings.IndexByte(elem, '=')
		if sep < 0 {
			sep = strings.IndexByte(elem, ':')
		}
		if sep < 0 {
			return malformedf("TEXT: element %s is not key=value", quote(elem))
		}
		key, val := trimOWS(elem[:sep]), trimOWS(elem[sep+1:])
		v, err := parseValue(key, val)
		if err != nil {
			return err
		}
		if err := r.setText(key, v); err != nil {
			return err
		}
	}
	return nil
}

// setText stores one TEXT entry, refusing unknown names and duplicates.
func (r *Report) setText(key string, v float64) error {
	var bit Fields
	var dst *float64
	switch key {
	case prefixNamed + MetricRIF:
		bit, dst = FieldRIF, &r.RIF
	case prefixNamed + MetricCapacity:
		bit, dst = FieldCapacity, &r.Capacity
	case "cpu_utilization":
		bit, dst = FieldCPUUtilization, &r.CPUUtilization
	case "mem_utilization":
		bit, dst = FieldMemUtilization, &r.MemUtilization
	case "application_utilization":
		bit, dst = FieldAppUtilization, &r.AppUtilization
	case "rps_fractional":
		bit, dst = FieldRPS, &r.RPS
	case "eps":
		bit, dst = FieldEPS, &r.EPS
	}
	if dst != nil {
		if r.Has&bit != 0 {
			return malformedf("TEXT: duplicate metric %s", quote(key))
		}
		r.Has |= bit
		*dst = v
		return nil
	}
	var m *map[string]float64
	var name string
	switch {
	case strings.HasPrefix(key, prefixNamed):
		m, name = &r.NamedMetrics, key[len(prefixNamed):]
	case strings.HasPrefix(key, prefixUtilization):
		m, name = &r.Utilization, key[len(prefixUtilization):]
	case strings.HasPrefix(key, prefixCost):
		m, name = &r.RequestCost, key[len(prefixCost):]
	default:
		return malformedf("TEXT: unsupported metric name %s", quote(key))
	}
	if err := checkName(name); err != nil {
		return malformedf("TEXT: metric %s: %v", quote(key), err)
	}
	if _, dup := (*m)[name]; dup {
		return malformedf("TEXT: duplicate metric %s", quote(key))
	}
	if *m == nil {
		*m = make(map[string]float64, 2)
	}
	(*m)[name] = v
	return nil
}

// parseValue parses a decimal, finite, non-negative number. Only digits,
// '.', 'e', 'E', '+' and '-' are allowed: no NaN, Inf, hex or underscores.
func parseValue(key, val string) (float64, error) {
	if key == "" {
		return 0, malformedf("TEXT: empty metric name")
	}
	if val == "" {
		return 0, malformedf("TEXT: metric %s has no value", quote(key))
	}
	if v, ok := parseSmallInt(val); ok {
		return v, nil // the common case: RIF and capacity are counts
	}
	for i := 0; i < len(val); i++ {
		switch c := val[i]; {
		case c >= '0' && c <= '9', c == '.', c == 'e', c == 'E', c == '+', c == '-':
		default:
			return 0, malformedf("TEXT: metric %s: value %s is not a decimal number", quote(key), quote(val))
		}
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return 0, malformedf("TEXT: metric %s: value %s is not a finite decimal number", quote(key), quote(val))
	}
	if err := checkValue(v); err != nil {
		return 0, malformedf("TEXT: metric %s: %v", quote(key), err)
	}
	return v, nil
}

// parseSmallInt parses up to 15 decimal digits, which a float64 holds
// exactly, without the general float parser.
func parseSmallInt(s string) (float64, bool) {
	if len(s) > 15 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return float64(n), true
}

// checkValue refuses what ORCA does not allow in a load report.
func checkValue(v float64) error {
	switch {
	case math.IsNaN(v):
		return fmt.Errorf("value is NaN")
	case math.IsInf(v, 0):
		return fmt.Errorf("value is infinite")
	case v < 0:
		return fmt.Errorf("value %v is negative", v)
	}
	return nil
}

// checkName accepts map keys that the TEXT format can carry: visible ASCII
// other than ',' and '=', at most 256 bytes.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '=' {
			return fmt.Errorf("name holds the byte %q", c)
		}
	}
	return nil
}

// maxNameLen bounds a metric name: long enough for any real name, short
// enough that a hostile header cannot make a map hold megabytes per key.
const maxNameLen = 256

// appendText appends r in the TEXT format, prefix included. Fields come in
// a fixed order and map entries sorted by name, so that equal reports give
// equal headers. It fails only for map names the format cannot carry.
func appendText(b []byte, r Report) ([]byte, error) {
	b = append(b, "TEXT "...)
	n := len(b)
	sep := func() {
		if len(b) > n {
			b = append(b, ',')
		}
	}
	if r.Has&FieldRIF != 0 {
		b = append(b, prefixNamed+MetricRIF+"="...)
		b = appendFloat(b, r.RIF)
	}
	if r.Has&FieldCapacity != 0 {
		sep()
		b = append(b, prefixNamed+MetricCapacity+"="...)
		b = appendFloat(b, r.Capacity)
	}
	for _, s := range scalars {
		if r.Has&s.bit != 0 {
			sep()
			b = append(b, s.name...)
			b = append(b, '=')
			b = appendFloat(b, *r.field(s.bit))
		}
	}
	for _, m := range [...]struct {
		prefix string
		m      map[string]float64
	}{{prefixNamed, r.NamedMetrics}, {prefixUtilization, r.Utilization}, {prefixCost, r.RequestCost}} {
		if len(m.m) == 0 {
			continue
		}
		names := make([]string, 0, len(m.m))
		for name := range m.m {
			if m.prefix == prefixNamed && (name == MetricRIF || name == MetricCapacity) {
				return b, fmt.Errorf("loadreport: named metric %q belongs in its field", name)
			}
			if err := checkName(name); err != nil {
				return b, fmt.Errorf("loadreport: metric %s%s cannot be written as TEXT: %w", m.prefix, strconv.Quote(name), err)
			}
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			sep()
			b = append(b, m.prefix...)
			b = append(b, name...)
			b = append(b, '=')
			b = appendFloat(b, m.m[name])
		}
	}
	return b, nil
}

// appendFloat writes v in the shortest form that parses back to v.
func appendFloat(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// trimOWS trims HTTP optional whitespace (spaces and tabs).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// quote quotes s for an error message, cut to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// malformedf returns an error wrapping ErrMalformed.
func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
