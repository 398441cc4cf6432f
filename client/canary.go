package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
)

// Canary is a gray release: the endpoints whose labels match Labels form
// the canary subset. They receive Share of ordinary requests and every
// marked one; the other endpoints receive the rest.
type Canary struct {
	// Labels select the canary endpoints, e.g. {"canary": "true"}.
	Labels map[string]string `json:"labels,omitempty"`
	// Share of unmarked requests sent to the canary subset, 0..1.
	Share float64 `json:"share,omitempty"`
	// Header marks a request for the canary subset when it parses as true
	// ("1", "true"). Default DefaultCanaryHeader.
	Header string `json:"header,omitempty"`
}

// DefaultCanaryHeader is the request header that marks canary requests.
const DefaultCanaryHeader = "X-Smartroute-Canary"

func (c Canary) validate() error {
	if len(c.Labels) == 0 {
		return fmt.Errorf("client: canary: labels must select the canary endpoints")
	}
	if c.Share < 0 || c.Share > 1 {
		return fmt.Errorf("client: canary: share %v must be within [0, 1]", c.Share)
	}
	return nil
}

func (c *Canary) header() string {
	if c.Header == "" {
		return DefaultCanaryHeader
	}
	return c.Header
}

type canaryKey struct{}

// CanaryContext marks every request made with the returned context for the
// canary subset of a client configured WithCanary.
func CanaryContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, canaryKey{}, true)
}

// isCanaryRequest reports whether req is marked for the canary subset.
func (c *Canary) isCanaryRequest(req *http.Request) bool {
	if v, _ := req.Context().Value(canaryKey{}).(bool); v {
		return true
	}
	if h := req.Header.Get(c.header()); h != "" {
		b, err := strconv.ParseBool(h)
		return err == nil && b
	}
	return false
}
