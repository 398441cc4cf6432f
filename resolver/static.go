package resolver

import (
	"context"
	"fmt"
	"strings"
	"unicode"
)

// Static is a Resolver for a fixed set of endpoints. Its zero value is not
// usable; create it with NewStatic or NewStaticEndpoints. It is safe for
// concurrent use.
type Static struct {
	eps []Endpoint // sorted
}

// NewStatic returns a resolver that delivers addrs, each host:port with a
// port from 1 to 65535. It fails, with an error wrapping ErrInvalidAddress
// that names the address, for a malformed or duplicate address or an empty
// list.
func NewStatic(addrs ...string) (*Static, error) {
	eps := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = Endpoint{Addr: a}
	}
	return NewStaticEndpoints(eps...)
}

// NewStaticEndpoints returns a resolver that delivers eps with their
// attributes (weight, zone, labels, draining). Addresses are checked as by
// NewStatic. An empty Origin.Kind is set to "static".
func NewStaticEndpoints(eps ...Endpoint) (*Static, error) {
	addrs := make([]string, len(eps))
	for i, e := range eps {
		addrs[i] = e.Addr
	}
	if err := validateStatic(addrs); err != nil {
		return nil, fmt.Errorf("resolver: static: %w", err)
	}
	eps = cloneEndpoints(eps)
	for i := range eps {
		if eps[i].Origin.Kind == "" {
			eps[i].Origin.Kind = SchemeStatic
		}
	}
	SortEndpoints(eps)
	return &Static{eps: eps}, nil
}

// Watch delivers the endpoints once and waits until ctx ends; it then
// returns ctx's error.
func (s *Static) Watch(ctx context.Context, update func(State)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	update(State{Endpoints: cloneEndpoints(s.eps)})
	<-ctx.Done()
	return ctx.Err()
}

// Endpoints returns a copy of the set.
func (s *Static) Endpoints() []Endpoint { return cloneEndpoints(s.eps) }

// validateStatic checks a static address list; its errors wrap
// ErrInvalidAddress.
func validateStatic(addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("no addresses: %w", ErrInvalidAddress)
	}
	seen := make(map[string]bool, len(addrs))
	for i, a := range addrs {
		if strings.TrimSpace(a) == "" {
			return fmt.Errorf("address %d is empty: %w", i+1, ErrInvalidAddress)
		}
		if strings.ContainsFunc(a, unicode.IsSpace) {
			return fmt.Errorf("address %q contains white space: %w", a, ErrInvalidAddress)
		}
		if _, _, err := splitHostPort(a); err != nil {
			return err
		}
		if seen[a] {
			return fmt.Errorf("address %q is listed twice: %w", a, ErrInvalidAddress)
		}
		seen[a] = true
	}
	return nil
}
