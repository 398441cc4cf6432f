package registry

import (
	"encoding/json"
	"fmt"
)

// Encode returns the JSON value stored for inst, after defaulting its ID to
// its address and validating it.
func Encode(inst Instance) ([]byte, error) {
	inst = inst.withDefaults()
	if err := inst.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(inst)
}

// endpointsUpdate is the value written by etcd's own
// go.etcd.io/etcd/client/v3/naming/endpoints manager (internal.Update).
type endpointsUpdate struct {
	Op       uint8
	Addr     string
	Metadata any
}

// Decode parses the value stored at key under prefix. It is lenient where it
// is safe:
//
//   - fields it does not know are ignored, so newer writers can add some;
//   - a missing service or ID is taken from the key;
//   - a value written by etcd's naming/endpoints manager
//     ({"Op":0,"Addr":"10.0.0.1:443","Metadata":…}) is understood.
//
// It fails, with an error wrapping ErrInvalidInstance, for a value that is
// not a JSON object, a field of the wrong type, a service or ID that
// contradicts the key, or an instance that Validate rejects.
func Decode(prefix, key string, value []byte) (Instance, error) {
	service, id, err := ParseKey(prefix, key)
	if err != nil {
		return Instance{}, fmt.Errorf("%w: %w", err, ErrInvalidInstance)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil || fields == nil {
		return Instance{}, decodeErr(key, fmt.Errorf("value is not a JSON object"))
	}
	var inst Instance
	if isEndpointsUpdate(fields) {
		var u endpointsUpdate
		if err := json.Unmarshal(value, &u); err != nil {
			return Instance{}, decodeErr(key, err)
		}
		if u.Op != 0 {
			return Instance{}, decodeErr(key, fmt.Errorf("naming/endpoints op %d is not Add", u.Op))
		}
		inst = Instance{Addr: u.Addr}
	} else if err := json.Unmarshal(value, &inst); err != nil {
		return Instance{}, decodeErr(key, err)
	}
	if inst.Service == "" {
		inst.Service = service
	} else if inst.Service != service {
		return Instance{}, decodeErr(key, fmt.Errorf("service %q does not match the key", inst.Service))
	}
	if inst.ID == "" {
		inst.ID = id
	} else if inst.ID != id {
		return Instance{}, decodeErr(key, fmt.Errorf("id %q does not match the key", inst.ID))
	}
	if err := inst.validate(); err != nil {
		return Instance{}, decodeErr(key, err)
	}
	return inst, nil
}

// isEndpointsUpdate tells the naming/endpoints format from ours. Go's JSON
// decoder matches field names without regard to case, so the exact names
// decide: "Addr" or "Op" without our "addr".
func isEndpointsUpdate(fields map[string]json.RawMessage) bool {
	if _, ok := fields["addr"]; ok {
		return false
	}
	_, addr := fields["Addr"]
	_, op := fields["Op"]
	return addr || op
}

func decodeErr(key string, err error) error {
	return fmt.Errorf("registry: decode %q: %w: %w", key, ErrInvalidInstance, err)
}
