package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file: the columns are documented, change doc.go too, then go test -update\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func u16(v uint16) *uint16   { return &v }
func iptr(v int) *int        { return &v }

// sampleEndpoints is a fixed report: one fast, one slow, one down, one
// draining endpoint.
func sampleEndpoints(scheme, target string, src func(i int) source) *endpointsReport {
	notAfter := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := &endpointsReport{
		Target: target, Check: "https", Count: 5, Policy: "least_latency", Healthy: 3,
		Pick:       "10.0.0.1:8443",
		PickReason: "lowest cost (latency × (in-flight+1)) 412µs among 2 endpoints, at random within the 20% tie band",
		scheme:     scheme, checkLine: "https GET /healthz, 5 checks each, timeout 1s",
	}
	r.Endpoints = []endpointReport{
		{Addr: "10.0.0.1:8443", Zone: "eu-1a", Weight: 1, State: "up", Healthy: true, Checks: 5, Loss: 0,
			RTTMinMS: f64(0.318), RTTAvgMS: f64(0.412), RTTP99MS: f64(0.655), Eligible: true, Picked: true,
			TLS: &tlsReport{Verified: true, NotAfter: &notAfter, DaysLeft: iptr(89)}},
		{Addr: "10.0.0.2:8443", Zone: "eu-1b", Weight: 5, Labels: map[string]string{"canary": "true", "team": "pay"}, State: "up", Healthy: true, Checks: 5, Failures: 1, Loss: 0.2,
			RTTMinMS: f64(48.2), RTTAvgMS: f64(51.7), RTTP99MS: f64(1210), Eligible: true,
			Error: "probe: http 10.0.0.2:8443: context deadline exceeded",
			TLS:   &tlsReport{Verified: true, NotAfter: &notAfter, DaysLeft: iptr(89)}},
		{Addr: "10.0.0.3:8443", Zone: "eu-1a", Weight: 1, State: "up", Checks: 5, Failures: 5, Loss: 1,
			Why:   "unhealthy: dial tcp 10.0.0.3:8443: connect: connection refused",
			Error: "dial tcp 10.0.0.3:8443: connect: connection refused",
			TLS:   &tlsReport{Problem: "failed", Error: "dial tcp 10.0.0.3:8443: connect: connection refused"}},
		{Addr: "10.0.0.4:8443", Weight: 1, State: "draining", Healthy: true, Checks: 5,
			RTTMinMS: f64(0.35), RTTAvgMS: f64(0.4), RTTP99MS: f64(0.51), Why: "draining",
			TLS: &tlsReport{Problem: "untrusted", Error: "x509: certificate signed by unknown authority"}},
	}
	for i := range r.Endpoints {
		r.Endpoints[i].Source = src(i)
	}
	return r
}

func TestEndpointsTableGolden(t *testing.T) {
	for _, tc := range []struct {
		file, scheme, target string
		src                  func(i int) source
	}{
		{"endpoints_etcd.golden", "etcd", "etcd:///api", func(i int) source {
			s := source{Kind: "etcd", Key: "/services/api/i" + string(rune('1'+i)), Revision: int64(40 + i), Lease: "694d7c1e2a3b4c5d", LeaseTTL: i64(7), LeaseGranted: i64(10)}
			if i == 2 {
				s.LeaseTTL = i64(-1)
			}
			if i == 3 {
				s.Lease, s.LeaseTTL, s.LeaseGranted = "", nil, nil
			}
			return s
		}},
		{"endpoints_dns.golden", "dns", "dns:///api.example.com:8443", func(int) source {
			return source{Kind: "dns-a", Name: "api.example.com.", Record: "A", TTL: i64(30)}
		}},
		{"endpoints_srv.golden", "dns+srv", "dns+srv:///_api._tcp.example.com", func(i int) source {
			return source{Kind: "dns-srv", Name: "_api._tcp.example.com.", Record: "SRV", TTL: i64(300), Priority: u16(uint16(10 * (i/2 + 1)))}
		}},
		{"endpoints_static.golden", "static", "static:///10.0.0.1:8443,10.0.0.2:8443,10.0.0.3:8443,10.0.0.4:8443", func(int) source {
			return source{Kind: "static"}
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeEndpointsTable(&b, sampleEndpoints(tc.scheme, tc.target, tc.src), false); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, b.Bytes())
		})
	}
	// No pick.
	r := sampleEndpoints("static", "static:///10.0.0.3:8443", func(int) source { return source{Kind: "static"} })
	r.Endpoints, r.Healthy, r.Pick, r.PickError = r.Endpoints[2:3], 0, "", "no healthy endpoint for service static"
	var b bytes.Buffer
	if err := writeEndpointsTable(&b, r, false); err != nil {
		t.Fatal(err)
	}
	golden(t, "endpoints_nopick.golden", b.Bytes())
}

func TestPickAndCertsTablesGolden(t *testing.T) {
	var b bytes.Buffer
	err := writePickTable(&b, &pickReport{
		Target: "etcd:///api", Check: "http", Count: 5, Policy: "least_latency", N: 1000, Healthy: 2,
		checkLine: "http GET /, 5 checks each, timeout 1s",
		Picks: []pickResult{
			{Addr: "10.0.0.1:8080", Zone: "eu-1a", Weight: 1, Labels: map[string]string{"canary": "true"}, State: "up", Healthy: true, RTTAvgMS: f64(0.41), Picks: 1000, Share: 1, Eligible: true},
			{Addr: "10.0.0.2:8080", Zone: "eu-1b", Weight: 2, State: "up", Healthy: true, RTTAvgMS: f64(51.7), Picks: 0, Share: 0, Eligible: true},
			{Addr: "10.0.0.3:8080", Weight: 1, State: "up", Picks: 0, Why: "unhealthy: connection refused"},
		},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "pick.golden", b.Bytes())

	b.Reset()
	na := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	past := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	err = writeCertsTable(&b, &certsReport{
		Prefix: "/certs",
		CA:     []certRow{{Name: "ca", Subject: "CN=mesh-ca,O=example", Issuer: "CN=mesh-ca,O=example", NotAfter: &na, DaysLeft: iptr(180), Revision: 2, Valid: true, Status: "ok"}},
		Identities: []certRow{
			{Name: "old", Subject: "CN=old.mesh", SANs: []string{"old.mesh"}, Issuer: "CN=mesh-ca,O=example", NotAfter: &past, DaysLeft: iptr(-185), Key: "sealed", KEKID: "kek-1", Revision: 4, Status: "expired", Error: "expired at 2025-06-01T00:00:00Z"},
			{Name: "web", Subject: "CN=web.mesh", SANs: []string{"web.mesh", "10.0.0.1"}, Issuer: "CN=mesh-ca,O=example", NotAfter: &na, DaysLeft: iptr(180), Key: "sealed", KEKID: "kek-1", Revision: 3, Valid: true, Status: "ok"},
			{Name: "dev", Subject: "CN=dev.mesh", SANs: []string{"dev.mesh"}, Issuer: "CN=mesh-ca,O=example", NotAfter: &na, DaysLeft: iptr(180), Key: "plain", Revision: 5, Valid: true, Status: "ok"},
		},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "certs.golden", b.Bytes())
}
