package client

import (
	"fmt"
	"time"
)

// OutlierDetection is passive outlier detection as Envoy does it: an
// endpoint whose requests fail ConsecutiveFailures times in a row
// (connection errors, timeouts, 5xx answers) is ejected for
// BaseEjectionTime × the number of times it was ejected, at most
// MaxEjectionTime, and never more than MaxEjectedShare of the table at
// once (though one endpoint can always be ejected). Zero fields take the
// defaults.
type OutlierDetection struct {
	// ConsecutiveFailures ejects after this many failures in a row
	// (default 5, Envoy's consecutive_5xx).
	ConsecutiveFailures int `json:"consecutiveFailures,omitempty"`
	// BaseEjectionTime is the first ejection's length (default 30 s,
	// Envoy's).
	BaseEjectionTime time.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionTime caps the growing ejection time (default 300 s).
	MaxEjectionTime time.Duration `json:"maxEjectionTime,omitempty"`
	// MaxEjectedShare is the share of the table that may be ejected at
	// once (default 0.1, Envoy's 10%); at least one endpoint may always be.
	MaxEjectedShare float64 `json:"maxEjectedShare,omitempty"`
	// Disabled turns outlier detection off.
	Disabled bool `json:"disabled,omitempty"`
}

// Defaults of OutlierDetection.
const (
	DefaultConsecutiveFailures = 5
	DefaultBaseEjectionTime    = 30 * time.Second
	DefaultMaxEjectionTime     = 300 * time.Second
	DefaultMaxEjectedShare     = 0.1
)

func (o OutlierDetection) withDefaults() OutlierDetection {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if o.BaseEjectionTime == 0 {
		o.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if o.MaxEjectionTime == 0 {
		o.MaxEjectionTime = max(DefaultMaxEjectionTime, o.BaseEjectionTime)
	}
	if o.MaxEjectedShare == 0 {
		o.MaxEjectedShare = DefaultMaxEjectedShare
	}
	return o
}

func (o OutlierDetection) validate() error {
	switch {
	case o.ConsecutiveFailures < 1:
		return fmt.Errorf("client: outlier detection: consecutiveFailures %d must be at least 1", o.ConsecutiveFailures)
	case o.BaseEjectionTime < 0:
		return fmt.Errorf("client: outlier detection: baseEjectionTime %v must not be negative", o.BaseEjectionTime)
	case o.MaxEjectionTime < o.BaseEjectionTime:
		return fmt.Errorf("client: outlier detection: maxEjectionTime %v is below baseEjectionTime %v", o.MaxEjectionTime, o.BaseEjectionTime)
	case o.MaxEjectedShare < 0 || o.MaxEjectedShare > 1:
		return fmt.Errorf("client: outlier detection: maxEjectedShare %v must be within [0, 1]", o.MaxEjectedShare)
	}
	return nil
}

// ejectionTime returns how long the n-th ejection (n ≥ 1) lasts.
func (o OutlierDetection) ejectionTime(n int32) time.Duration {
	d := o.BaseEjectionTime * time.Duration(n)
	if d > o.MaxEjectionTime || d < 0 {
		d = o.MaxEjectionTime
	}
	return d
}

// maxEjected returns how many of total endpoints may be ejected at once.
func (o OutlierDetection) maxEjected(total int) int {
	return max(1, int(o.MaxEjectedShare*float64(total)))
}
