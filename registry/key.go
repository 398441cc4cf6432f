package registry

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the etcd prefix under which services register:
// /services/<service>/<instance-id>.
const DefaultPrefix = "/services"

// normPrefix returns prefix with exactly one trailing '/': DefaultPrefix's
// when prefix is empty, "/" (the root) for "/". It is idempotent, so a
// prefix normalized once by an option and again by Key is the same prefix,
// and writers and readers given the same string agree.
func normPrefix(prefix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return strings.TrimRight(prefix, "/") + "/"
}

// Key returns the etcd key of one instance: <prefix>/<service>/<id>. An
// empty prefix means DefaultPrefix; trailing slashes are ignored, so "/"
// puts instances at /<service>/<id>.
func Key(prefix, service, id string) string {
	return normPrefix(prefix) + service + "/" + id
}

// ServicePrefix returns the etcd prefix that holds every instance of a
// service, with its trailing '/': <prefix>/<service>/. Watching it never
// matches another service whose name starts the same ("api" does not see
// "api-canary"). The prefix is normalized as Key normalizes it.
func ServicePrefix(prefix, service string) string {
	return normPrefix(prefix) + service + "/"
}

// ParseKey splits an instance key into its service and instance ID. It fails
// for a key outside prefix or one with more or fewer path segments than
// <prefix>/<service>/<id>.
func ParseKey(prefix, key string) (service, id string, err error) {
	p := normPrefix(prefix)
	rest, ok := strings.CutPrefix(key, p)
	if !ok {
		return "", "", fmt.Errorf("registry: key %q is not under %q", key, p)
	}
	service, id, ok = strings.Cut(rest, "/")
	if !ok || service == "" || id == "" || strings.Contains(id, "/") {
		return "", "", fmt.Errorf("registry: key %q is not %s<service>/<id>", key, p)
	}
	return service, id, nil
}
