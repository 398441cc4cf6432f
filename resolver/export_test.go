package resolver

// WithResolvConfPort makes the DNS resolver ask the servers of its
// resolv.conf file on port instead of 53, so that tests can point one at a
// server on a free loopback port.
func WithResolvConfPort(port string) Option {
	return func(o *options) { o.resolvConfPort = port }
}
