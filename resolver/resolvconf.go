package resolver

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"

	"github.com/miekg/dns"
)

// resolvConf is the name servers of a resolv.conf(5) file, read again
// whenever the file has changed (another file put in its place, or its
// size or modification time changed), as glibc and Go's own resolver do,
// so that a long-running client follows a new name server without a
// restart. A file that cannot be read or names no server leaves the
// previous servers in force, and is reported once. It is safe for
// concurrent use.
type resolvConf struct {
	path string
	port string // of every server: resolv.conf names addresses only
	log  *slog.Logger

	mu      sync.Mutex
	info    os.FileInfo // of the file the servers were read from
	servers []string    // host:port
	bad     os.FileInfo // the last version that could not be used, reported once
}

// newResolvConf reads path; unlike later reads, a first read that fails is
// an error.
func newResolvConf(path, port string, log *slog.Logger) (*resolvConf, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: read name servers: %w", err)
	}
	servers, err := readResolvConf(path, port)
	if err != nil {
		return nil, err
	}
	return &resolvConf{path: path, port: port, log: log, info: info, servers: servers}, nil
}

// readResolvConf returns the name servers of a resolv.conf file, on port.
func readResolvConf(path, port string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: read name servers: %w", err)
	}
	var servers []string
	for _, s := range conf.Servers {
		servers = append(servers, net.JoinHostPort(s, port))
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("resolver: no nameserver in %s", path)
	}
	return servers, nil
}

// current returns the name servers, reading the file again first if it
// changed since it was last read.
func (r *resolvConf) current() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	info, err := os.Stat(r.path)
	if err != nil {
		r.refuse(nil, err)
		return r.servers
	}
	if sameVersion(info, r.info) || sameVersion(info, r.bad) {
		return r.servers
	}
	servers, err := readResolvConf(r.path, r.port)
	if err != nil {
		r.refuse(info, err)
		return r.servers
	}
	r.info, r.bad = info, nil
	if !slices.Equal(servers, r.servers) {
		r.log.Info("resolver: name servers changed", "resolv_conf", r.path, "servers", servers, "previous", r.servers)
		r.servers = servers
	}
	return r.servers
}

// refuse reports, once per version of the file, why it cannot be used.
func (r *resolvConf) refuse(info os.FileInfo, err error) {
	if info == nil {
		if r.bad == nil && r.info == nil {
			return // already reported: the file is gone
		}
		r.bad, r.info = nil, nil
	} else {
		r.bad = info
	}
	r.log.Warn("resolver: cannot use the resolv.conf file; keeping the previous name servers", "resolv_conf", r.path, "servers", r.servers, "err", err)
}

// sameVersion reports whether two stats describe the same version of a
// file: the same file (not another one renamed into place), unchanged.
func sameVersion(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
