package loadreport

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// Middleware returns next wrapped so that every request counts as in
// flight from its arrival until next returns, and every response carries
// the endpoint-load-metrics header: written into the header map just
// before the headers go out (the first WriteHeader with a final status,
// Write, Flush or ReadFrom, or the return of next), so it holds the load at
// the time of the answer. Its RIF leaves out the request being answered.
// 1xx informational responses do not carry it.
//
// The ResponseWriter handed to next supports http.Flusher, http.Hijacker
// and io.ReaderFrom when the server's does, and Unwrap, so
// http.NewResponseController reaches every feature of the server's
// writer (deadlines, full duplex); HTTP/2 responses work the same.
func (r *Reporter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := r.begin()
		lw := &responseWriter{ResponseWriter: w, r: r, self: 1}
		defer func() {
			lw.finish()
			r.end(start)
		}()
		next.ServeHTTP(lw, req)
	})
}

// ReportOnly returns next wrapped so that its responses carry the
// endpoint-load-metrics header without being counted as requests in
// flight: use it for health-check and probe endpoints, whose answers
// should tell the load of the real work.
func (r *Reporter) ReportOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		lw := &responseWriter{ResponseWriter: w, r: r}
		defer lw.finish()
		next.ServeHTTP(lw, req)
	})
}

// The writer handed to handlers has the optional interfaces of net/http's.
var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
)

// responseWriter sets the load report header once, before the headers are
// written. It is used by one handler goroutine, as http.ResponseWriter is.
type responseWriter struct {
	http.ResponseWriter
	r    *Reporter
	self int64 // requests of this response counted in r.inFlight
	done bool  // the header was set, or the connection hijacked
}

// report sets the header unless it was set already.
func (w *responseWriter) report() {
	if w.done {
		return
	}
	w.done = true
	var buf [192]byte
	b, err := appendHeader(buf[:0], w.r.snapshot(w.self), w.r.format)
	if err != nil {
		return // only reports with map entries can fail, and these have none
	}
	w.ResponseWriter.Header()[HeaderName] = []string{string(b)}
}

// finish runs when the handler returned: if it wrote nothing, net/http is
// about to write the headers now.
func (w *responseWriter) finish() { w.report() }

// WriteHeader sets the report before a final status goes out.
func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
		w.report()
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write sets the report before the implicit 200.
func (w *responseWriter) Write(p []byte) (int, error) {
	w.report()
	return w.ResponseWriter.Write(p)
}

// Flush sets the report, then flushes (http.Flusher).
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError sets the report, then flushes and returns the error, which
// http.ResponseController.Flush uses.
func (w *responseWriter) FlushError() error {
	w.report()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (http.Hijacker); no header is written
// after that. It fails with http.ErrNotSupported where the server's writer
// cannot hijack (HTTP/2).
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.done = true
	}
	return c, rw, err
}

// ReadFrom sets the report, then copies from src with the server's
// writer's ReadFrom (sendfile) when it has one.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	w.report()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// Unwrap returns the server's writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides a writer's ReadFrom so that io.Copy does not loop.
type writerOnly struct{ io.Writer }
