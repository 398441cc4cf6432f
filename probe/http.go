package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/smartroute/smartroute/loadreport"
)

// ErrUnexpectedStatus is wrapped by the error of an HTTP check whose response
// status is outside the expected range.
var ErrUnexpectedStatus = errors.New("probe: unexpected HTTP status")

// maxDrain bounds how much of a response body an HTTP check reads.
const maxDrain = 64 << 10

// HTTP checks an address with an HTTP(S) GET. The check succeeds when the
// response status is within [StatusMin, StatusMax]. Redirects are not
// followed: a 3xx is judged by its own status.
//
// The zero value GETs http://addr/ and expects 200..399.
type HTTP struct {
	// Path is the request path (and query), "/" when empty.
	Path string
	// Scheme is "http" (the default) or "https".
	Scheme string
	// Host is the Host header, and for https the TLS server name when TLS
	// does not set one. Empty means the address itself.
	Host string
	// StatusMin and StatusMax bound the expected status (inclusive). Zero
	// means 200 and 399 respectively.
	StatusMin, StatusMax int
	// TLS configures https checks; nil means the system roots. The
	// certificate is always verified unless this config says otherwise.
	TLS *tls.Config
	// Client, when set, sends the request; Scheme, TLS and the redirect
	// rule are then the client's business. When nil every check uses a
	// fresh connection (like nginx's health checks), so the RTT includes
	// the connect and, for https, the handshake.
	Client *http.Client
}

func (h HTTP) url(addr string) (string, error) {
	scheme := h.Scheme
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		return "", fmt.Errorf("probe: http scheme %q is not http or https", scheme)
	}
	path := h.Path
	if path == "" {
		path = "/"
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return scheme + "://" + addr + path, nil
}

func (h HTTP) statusRange() (lo, hi int) {
	lo, hi = h.StatusMin, h.StatusMax
	if lo == 0 {
		lo = 200
	}
	if hi == 0 {
		hi = 399
	}
	return lo, hi
}

func (h HTTP) client(addr string) (c *http.Client, closeIdle func()) {
	if h.Client != nil {
		return h.Client, func() {}
	}
	var tcfg *tls.Config
	if h.TLS != nil {
		tcfg = h.TLS.Clone()
	} else {
		tcfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tcfg.ServerName == "" {
		name := h.Host
		if name == "" {
			name = addr
		}
		if host, _, err := net.SplitHostPort(name); err == nil {
			name = host
		}
		tcfg.ServerName = name
	}
	tr := &http.Transport{
		Proxy:              nil,
		TLSClientConfig:    tcfg,
		DisableKeepAlives:  true,
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}
	c = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, tr.CloseIdleConnections
}

// Check sends one GET to addr and judges the status. The RTT is the time to
// the response headers.
func (h HTTP) Check(ctx context.Context, addr string) (time.Duration, error) {
	res, err := h.CheckLoad(ctx, addr)
	return res.RTT, err
}

// CheckLoad is Check that also reads the load report of the response: the
// endpoint-load-metrics header (or the legacy endpoint-load-metrics-bin)
// that servers send with loadreport.Reporter or any ORCA implementation.
// A report is read whatever the status: an overloaded server answering 503
// still says how loaded it is.
func (h HTTP) CheckLoad(ctx context.Context, addr string) (Result, error) {
	u, err := h.url(addr)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{}, fmt.Errorf("probe: http %s: %w", addr, err)
	}
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header.Set("User-Agent", "smartroute-probe")
	c, closeIdle := h.client(addr)
	defer closeIdle()
	start := time.Now()
	resp, err := c.Do(req)
	now := time.Now()
	res := Result{RTT: now.Sub(start)}
	if err != nil {
		return res, fmt.Errorf("probe: http %s: %w", addr, err)
	}
	if load, lerr := loadreport.FromHeader(resp.Header, now); lerr == nil {
		res.Load = load
	} else if !errors.Is(lerr, loadreport.ErrNoReport) {
		res.LoadErr = fmt.Errorf("probe: http %s: %w", addr, lerr)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	if lo, hi := h.statusRange(); resp.StatusCode < lo || resp.StatusCode > hi {
		return res, fmt.Errorf("%w: %s answered %d, want %d..%d", ErrUnexpectedStatus, addr, resp.StatusCode, lo, hi)
	}
	return res, nil
}
