// Package metrics holds the Prometheus helpers that more than one smartroute
// package needs.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace is the prefix of every smartroute metric name.
const Namespace = "smartroute"

// Register registers c on r and returns the collector to use. When an equal
// collector is already registered (two clients of one process sharing a
// Registerer) it returns that one, so both feed the same series. A nil r
// leaves c unregistered: it still counts, nobody scrapes it.
func Register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	if r == nil {
		return c, nil
	}
	err := r.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metric: %w", err)
}
