package main

import (
	"os"
	"time"
)

// The --json document of endpoints for one healthy, picked etcd endpoint:
// the field names are part of lbprobe's interface.
func Example_endpointsJSON() {
	notAfter := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	writeJSON(os.Stdout, &endpointsReport{
		Target: "etcd:///api", Check: "https", Count: 5, Policy: "least_latency",
		Pick: "10.0.0.1:8443", PickReason: "lowest cost (latency × (in-flight+1)) 412µs among 1 endpoint, at random within the 20% tie band",
		Healthy: 1,
		Endpoints: []endpointReport{{
			Addr: "10.0.0.1:8443", Zone: "eu-1a", Weight: 1, Labels: map[string]string{}, State: "up", Healthy: true, Checks: 5,
			RTTMinMS: f64(0.318), RTTAvgMS: f64(0.412), RTTP99MS: f64(0.655),
			TLS:      &tlsReport{Verified: true, Version: "TLS 1.3", Subject: "CN=api", NotAfter: &notAfter, DaysLeft: iptr(89)},
			Eligible: true, Picked: true,
			Source: source{Kind: "etcd", Key: "/services/api/i1", ID: "i1", Revision: 40,
				Lease: "694d7c1e2a3b4c5d", LeaseTTL: i64(7), LeaseGranted: i64(10)},
		}},
	})
	// Output:
	// {
	//   "target": "etcd:///api",
	//   "check": "https",
	//   "count": 5,
	//   "policy": "least_latency",
	//   "pick": "10.0.0.1:8443",
	//   "pick_reason": "lowest cost (latency × (in-flight+1)) 412µs among 1 endpoint, at random within the 20% tie band",
	//   "healthy": 1,
	//   "endpoints": [
	//     {
	//       "addr": "10.0.0.1:8443",
	//       "zone": "eu-1a",
	//       "weight": 1,
	//       "labels": {},
	//       "state": "up",
	//       "healthy": true,
	//       "checks": 5,
	//       "failures": 0,
	//       "loss": 0,
	//       "rtt_min_ms": 0.318,
	//       "rtt_avg_ms": 0.412,
	//       "rtt_p99_ms": 0.655,
	//       "tls": {
	//         "verified": true,
	//         "version": "TLS 1.3",
	//         "subject": "CN=api",
	//         "not_after": "2026-03-01T12:00:00Z",
	//         "days_left": 89
	//       },
	//       "eligible": true,
	//       "picked": true,
	//       "source": {
	//         "kind": "etcd",
	//         "key": "/services/api/i1",
	//         "id": "i1",
	//         "revision": 40,
	//         "lease": "694d7c1e2a3b4c5d",
	//         "lease_ttl_s": 7,
	//         "lease_granted_ttl_s": 10
	//       }
	//     }
	//   ]
	// }
}
