package registry

import (
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Values of Instance.State.
const (
	// InstanceUp is an instance that takes traffic. The empty state means
	// the same.
	InstanceUp = "up"
	// InstanceDraining is an instance that finishes the requests it has and
	// takes no new ones; clients stop picking it.
	InstanceDraining = "draining"
)

// DefaultWeight is the weight of an instance whose Weight is 0. Weights are
// relative, as in nginx and Envoy, so 1 lets a canary at 1 take the same
// share as any other instance and a big machine at 4 take four times it.
const DefaultWeight = 1

// Instance is one registered endpoint of a service: the JSON value stored at
// /services/<service>/<id>. The registry package owns this type and its codec
// so that writers (Register) and readers (the resolvers) cannot drift.
type Instance struct {
	// Service is the logical service name, e.g. "api". It may not contain
	// '/'.
	Service string `json:"service"`
	// ID is unique within the service; it defaults to Addr. It may not
	// contain '/'.
	ID string `json:"id"`
	// Addr is where clients connect, as host:port.
	Addr string `json:"addr"`
	// Weight is the relative share of traffic for weighted policies; 0 means
	// DefaultWeight.
	Weight uint32 `json:"weight,omitempty"`
	// Zone is the failure domain (e.g. "eu-west-1a") used for zone
	// preference.
	Zone string `json:"zone,omitempty"`
	// Version is the deployed version, informational.
	Version string `json:"version,omitempty"`
	// Labels select subsets of instances, e.g. canary=true for a gray
	// release.
	Labels map[string]string `json:"labels,omitempty"`
	// State is "" or InstanceUp for an instance taking traffic, or
	// InstanceDraining.
	State string `json:"state,omitempty"`
}

// Draining reports whether the instance takes no new requests.
func (i Instance) Draining() bool { return i.State == InstanceDraining }

// EffectiveWeight returns Weight, or DefaultWeight when Weight is 0.
func (i Instance) EffectiveWeight() uint32 {
	if i.Weight == 0 {
		return DefaultWeight
	}
	return i.Weight
}

// Clone returns a copy of i that shares no map with it.
func (i Instance) Clone() Instance {
	i.Labels = maps.Clone(i.Labels)
	return i
}

// Equal reports whether i and o describe the same instance with the same
// attributes.
func (i Instance) Equal(o Instance) bool {
	return i.Service == o.Service && i.ID == o.ID && i.Addr == o.Addr &&
		i.EffectiveWeight() == o.EffectiveWeight() && i.Zone == o.Zone &&
		i.Version == o.Version && i.Draining() == o.Draining() &&
		maps.Equal(i.Labels, o.Labels)
}

// String returns "service/id", the name used in logs and errors.
func (i Instance) String() string { return i.Service + "/" + i.ID }

// withDefaults returns i with ID defaulted to Addr.
func (i Instance) withDefaults() Instance {
	if i.ID == "" {
		i.ID = i.Addr
	}
	return i
}

// Validate reports the first field of i that cannot be registered, as an
// error wrapping ErrInvalidInstance that names the field. An empty ID is
// accepted: Register defaults it to Addr.
func (i Instance) Validate() error {
	if err := i.validate(); err != nil {
		return invalid(i, err)
	}
	return nil
}

// validate returns the bare reason i is invalid.
func (i Instance) validate() error {
	if err := validateName("service", i.Service); err != nil {
		return err
	}
	if i.ID != "" {
		if err := validateName("id", i.ID); err != nil {
			return err
		}
	}
	if err := validateAddr(i.Addr); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"addr", i.Addr}, {"zone", i.Zone}, {"version", i.Version}} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s %q is not valid UTF-8", f.name, f.v)
		}
	}
	for k, v := range i.Labels {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("label %q=%q is not valid UTF-8", k, v)
		}
	}
	switch i.State {
	case "", InstanceUp, InstanceDraining:
	default:
		return fmt.Errorf("state %q is not %q or %q", i.State, InstanceUp, InstanceDraining)
	}
	for k := range i.Labels {
		if k == "" {
			return fmt.Errorf("labels: empty label name")
		}
	}
	return nil
}

func invalid(i Instance, err error) error {
	name := i.Service
	if i.ID != "" || i.Addr != "" {
		name = i.withDefaults().String()
	}
	return fmt.Errorf("registry: invalid instance %q: %w: %w", name, ErrInvalidInstance, err)
}

func validateName(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s is empty", field)
	case strings.Contains(v, "/"):
		return fmt.Errorf("%s %q contains '/'", field, v)
	case !utf8.ValidString(v):
		// JSON cannot carry it: encoding would silently change the name.
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%s %q has leading or trailing space", field, v)
	}
	return nil
}

func validateAddr(addr string) error {
	if addr == "" {
		return fmt.Errorf("addr is empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("addr %q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("addr %q has no host", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("addr %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}
