package loadreport

import (
	"net/http"
	"strings"
	"time"
)

// maxHeaderLen bounds the header value the decoders read. Real reports are
// well under 1 KiB; the bound keeps a hostile value from costing much.
const maxHeaderLen = 16 << 10

// ParseHeader decodes the value of an endpoint-load-metrics header in any
// of the three formats of Envoy's ORCA parser:
//
//	TEXT named_metrics.rif=3,named_metrics.capacity=8,cpu_utilization=0.4
//	JSON {"named_metrics":{"rif":3},"cpu_utilization":0.4}
//	BIN CQAAAAAAAOA/...   (base64 of an OrcaLoadReport, padded or not)
//
// Received is set to time.Now(). A TEXT value whose entries are all known
// fields (RIF, capacity, the utilizations, rps_fractional, eps) decodes
// without allocating. Errors wrap ErrMalformed and name the offending
// part: an unknown format or metric name, a duplicate, a value that is not
// a finite, non-negative decimal number.
func ParseHeader(v string) (Report, error) {
	return ParseHeaderAt(v, time.Now())
}

// ParseHeaderAt is ParseHeader with the time of receipt given by the
// caller, for one that already read a clock.
func ParseHeaderAt(v string, received time.Time) (Report, error) {
	r := Report{Received: received}
	if len(v) > maxHeaderLen {
		return Report{}, malformedf("header value is %d bytes, more than %d", len(v), maxHeaderLen)
	}
	for v != "" && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	var err error
	switch {
	case strings.HasPrefix(v, "TEXT "):
		err = parseText(v[len("TEXT "):], &r)
	case strings.HasPrefix(v, "JSON "):
		err = parseJSON(v[len("JSON "):], &r)
	case strings.HasPrefix(v, "BIN "):
		err = parseBase64(v[len("BIN "):], &r)
	default:
		word := v
		if i := strings.IndexAny(word, " \t"); i >= 0 {
			word = word[:i]
		}
		return Report{}, malformedf("unsupported format %s: want TEXT, JSON or BIN followed by a space", quote(word))
	}
	if err != nil {
		return Report{}, err
	}
	return r, nil
}

// FromHeader decodes the load report of an HTTP response's header: the
// endpoint-load-metrics header (see ParseHeader) or, failing that, the
// legacy endpoint-load-metrics-bin header (base64 OrcaLoadReport without a
// prefix). It returns ErrNoReport when neither is present, and an error
// wrapping ErrMalformed when the header is repeated, both are present, or
// the value does not decode. Like ParseHeader it allocates nothing for a
// TEXT report of known fields.
func FromHeader(h http.Header, received time.Time) (Report, error) {
	text, bin := h[HeaderName], h[HeaderNameBin]
	switch {
	case len(text) == 0 && len(bin) == 0:
		return Report{}, ErrNoReport
	case len(text) > 0 && len(bin) > 0:
		return Report{}, malformedf("both %s and %s are present", HeaderName, HeaderNameBin)
	case len(text) > 1 || len(bin) > 1:
		return Report{}, malformedf("more than one load report header")
	case len(text) == 1:
		return ParseHeaderAt(text[0], received)
	}
	r := Report{Received: received}
	if len(bin[0]) > maxHeaderLen {
		return Report{}, malformedf("header value is %d bytes, more than %d", len(bin[0]), maxHeaderLen)
	}
	if err := parseBase64(trimOWS(bin[0]), &r); err != nil {
		return Report{}, err
	}
	return r, nil
}
