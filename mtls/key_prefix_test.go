package mtls

import "testing"

// A prefix normalized once by WithPrefix and again by a key function is the
// same prefix: "/" puts the schema at the root, not under DefaultPrefix.
func TestPrefixNormalizationIsIdempotent(t *testing.T) {
	for _, tc := range []struct{ prefix, ca, crt string }{
		{"", "/certs/ca", "/certs/api/tls.crt"},
		{"/", "/ca", "/api/tls.crt"},
		{"//", "/ca", "/api/tls.crt"},
		{"/tls/", "/tls/ca", "/tls/api/tls.crt"},
	} {
		once := normPrefix(tc.prefix)
		for _, p := range []string{tc.prefix, once, normPrefix(once)} {
			if got := CAKey(p); got != tc.ca {
				t.Errorf("CAKey(%q) (from %q) = %q, want %q", p, tc.prefix, got, tc.ca)
			}
			if got := CertKey(p, "api"); got != tc.crt {
				t.Errorf("CertKey(%q, api) (from %q) = %q, want %q", p, tc.prefix, got, tc.crt)
			}
		}
		if kind, name := parseKey(once, tc.crt); kind != kindCert || name != "api" {
			t.Errorf("parseKey(%q, %q) = %v, %q; want the certificate of api", once, tc.crt, kind, name)
		}
		if kind, _ := parseKey(once, tc.ca); kind != kindCA {
			t.Errorf("parseKey(%q, %q) = %v; want the CA bundle", once, tc.ca, kind)
		}
	}
}
