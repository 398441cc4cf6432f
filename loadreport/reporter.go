package loadreport

import (
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// Reporter counts the requests a server has in flight and reports them,
// with the optional utilizations and capacity set on it, to clients and
// probes: in the endpoint-load-metrics header of HTTP responses
// (Middleware, ReportOnly), in the trailers of gRPC calls (ServerOptions)
// and on the ORCA out-of-band stream (RegisterORCA). One Reporter may
// serve HTTP and gRPC at once: its count is then the server's total.
//
// The zero value is ready to use: TEXT headers, no capacity, no
// utilization, no metrics. Methods are safe for concurrent use.
type Reporter struct {
	inFlight atomic.Int64

	set      atomic.Uint32 // Fields set through the options and setters
	capacity atomic.Uint64 // float64 bits
	cpu      atomic.Uint64
	mem      atomic.Uint64
	app      atomic.Uint64

	format  Format
	exclude []string
	window  *rateWindow // nil: no rps_fractional
	log     *slog.Logger
}

// New returns a Reporter configured by opts.
func New(opts ...Option) *Reporter {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	r := &Reporter{format: o.format, exclude: o.exclude, log: o.logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if o.capacity > 0 {
		r.SetCapacity(o.capacity)
	}
	if o.window > 0 {
		r.window = newRateWindow(o.window, time.Now())
	}
	registerMetrics(r, o.reg, r.log)
	return r
}

// InFlight returns how many requests are in flight now (counted ones:
// see Middleware and the gRPC interceptors).
func (r *Reporter) InFlight() int64 { return r.inFlight.Load() }

// Snapshot returns the report the Reporter would send now to a probe
// (RIF is the whole count). Received is left zero: it is the receiver's
// clock that matters.
func (r *Reporter) Snapshot() Report { return r.snapshot(0) }

// SetCapacity sets the capacity hint: how many requests the server works
// on at once before further ones queue. n <= 0 removes it.
func (r *Reporter) SetCapacity(n int) {
	if n <= 0 {
		r.set.And(^uint32(FieldCapacity))
		return
	}
	r.store(FieldCapacity, &r.capacity, float64(n))
}

// SetCPUUtilization sets the reported cpu_utilization (1 is all the CPU
// the server may use; more is allowed). A negative, NaN or infinite value
// removes it.
func (r *Reporter) SetCPUUtilization(v float64) { r.store(FieldCPUUtilization, &r.cpu, v) }

// SetMemUtilization sets the reported mem_utilization, as
// SetCPUUtilization.
func (r *Reporter) SetMemUtilization(v float64) { r.store(FieldMemUtilization, &r.mem, v) }

// SetAppUtilization sets the reported application_utilization, as
// SetCPUUtilization. It overrides the one derived from requests in flight
// (see WithRateWindow).
func (r *Reporter) SetAppUtilization(v float64) { r.store(FieldAppUtilization, &r.app, v) }

// store sets or (for a value checkValue refuses) removes one field. The
// value is stored before its bit so that a reader seeing the bit sees the
// value.
func (r *Reporter) store(bit Fields, dst *atomic.Uint64, v float64) {
	if checkValue(v) != nil {
		r.set.And(^uint32(bit))
		return
	}
	dst.Store(math.Float64bits(v))
	r.set.Or(uint32(bit))
}

// snapshot builds the current report, leaving self requests out of RIF
// (1 for the answer being written, 0 for a probe or an uncounted call).
func (r *Reporter) snapshot(self int64) Report {
	rep := Report{Has: FieldRIF, RIF: float64(max(r.inFlight.Load()-self, 0))}
	set := Fields(r.set.Load())
	if set&FieldCapacity != 0 {
		rep.Has |= FieldCapacity
		rep.Capacity = math.Float64frombits(r.capacity.Load())
	}
	if set&FieldCPUUtilization != 0 {
		rep.Has |= FieldCPUUtilization
		rep.CPUUtilization = math.Float64frombits(r.cpu.Load())
	}
	if set&FieldMemUtilization != 0 {
		rep.Has |= FieldMemUtilization
		rep.MemUtilization = math.Float64frombits(r.mem.Load())
	}
	if set&FieldAppUtilization != 0 {
		rep.Has |= FieldAppUtilization
		rep.AppUtilization = math.Float64frombits(r.app.Load())
	}
	if r.window != nil {
		if rps, meanRIF, ok := r.window.rates(time.Now()); ok {
			rep.Has |= FieldRPS
			rep.RPS = rps
			if rep.Has&FieldAppUtilization == 0 && rep.Has&FieldCapacity != 0 {
				rep.Has |= FieldAppUtilization
				rep.AppUtilization = meanRIF / rep.Capacity
			}
		}
	}
	return rep
}

// begin counts a request in; the returned time is zero unless a rate
// window needs the request's duration.
func (r *Reporter) begin() time.Time {
	r.inFlight.Add(1)
	if r.window != nil {
		return time.Now()
	}
	return time.Time{}
}

// end counts a request out.
func (r *Reporter) end(start time.Time) {
	r.inFlight.Add(-1)
	if r.window != nil {
		r.window.done(time.Since(start))
	}
}
