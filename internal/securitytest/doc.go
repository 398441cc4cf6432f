// Package securitytest holds tests that read the module's source for
// security rules no single package can check on its own: TLS verification
// never switched off, TLS 1.2 at least wherever a tls.Config is built. It
// has no code of its own.
package securitytest
