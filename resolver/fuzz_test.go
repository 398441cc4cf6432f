package resolver

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/smartroute/smartroute/registry"
)

// FuzzEtcdEndpoints feeds arbitrary keys under /services/api/ and values
// to the etcd resolver's decoding path (etcdSet over registry.Decode). It
// must never panic, and:
//
//   - a full list and the same key-values applied one event at a time give
//     the same set;
//   - every endpoint is a value that registry.Decode accepts for its key,
//     with a valid host:port; the set is sorted with one endpoint per
//     address;
//   - each undecodable value is reported once, not again on a re-list;
//   - deleting every key empties the set.
//
// Seeds are here and in testdata/fuzz/FuzzEtcdEndpoints.
func FuzzEtcdEndpoints(f *testing.F) {
	good := `{"service":"api","id":"a","addr":"10.0.0.1:443","weight":2,"zone":"z1","labels":{"canary":"true"}}`
	seeds := []struct{ k1, v1, k2, v2, k3, v3 string }{
		{"a", good, "b", `{"addr":"10.0.0.2:443","state":"draining"}`, "c", `{"Op":0,"Addr":"10.0.0.3:80","Metadata":null}`},
		{"a", good, "dup", `{"addr":"10.0.0.1:443","state":"draining"}`, "bad", `not json`},
		{"x/y", `{"addr":"10.0.0.1:1"}`, "b", `{"addr":"[::1]:80"}`, "c", `{"service":"other","addr":"10.0.0.1:1"}`},
		{"a", `{"addr":"a:1","weight":4294967296}`, "b", `{"Op":1,"Addr":"10.0.0.2:1"}`, "", `{"addr":"a:1"}`},
		{"a", `{"addr":"h:1","state":"up"}`, "a", `{"addr":"h:2"}`, "b", `{"addr":"h:1","labels":{"":"x"}}`},
	}
	for _, s := range seeds {
		f.Add(s.k1, []byte(s.v1), s.k2, []byte(s.v2), s.k3, []byte(s.v3))
	}
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, k2 string, v2 []byte, k3 string, v3 []byte) {
		const prefix = "/services/api/"
		var kvs []*mvccpb.KeyValue
		seen := map[string]bool{}
		for i, kv := range []struct {
			k string
			v []byte
		}{{k1, v1}, {k2, v2}, {k3, v3}} {
			key := prefix + kv.k
			if seen[key] {
				continue // etcd holds one value per key
			}
			seen[key] = true
			kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(key), Value: kv.v, ModRevision: int64(i + 2), Lease: int64(i)})
		}

		listed := newEtcdSet(registry.DefaultPrefix)
		bad := listed.reset(kvs)
		fromList := listed.endpoints()

		events := newEtcdSet(registry.DefaultPrefix)
		badEvents := 0
		for _, kv := range kvs {
			if _, fresh := events.put(kv); fresh {
				badEvents++
			}
		}
		fromEvents := events.endpoints()
		if !slices.EqualFunc(fromList, fromEvents, func(a, b Endpoint) bool { return a.Equal(b) && a.Origin == b.Origin }) {
			t.Fatalf("list gives %+v, events give %+v", fromList, fromEvents)
		}
		if len(bad) != badEvents {
			t.Fatalf("list reports %d bad values, events %d", len(bad), badEvents)
		}

		undecodable := 0
		values := map[string][]byte{}
		for _, kv := range kvs {
			values[string(kv.Key)] = kv.Value
			if _, err := registry.Decode(registry.DefaultPrefix, string(kv.Key), kv.Value); err != nil {
				undecodable++
			}
		}
		if len(bad) != undecodable {
			t.Fatalf("%d bad values reported, %d undecodable", len(bad), undecodable)
		}
		for i, e := range fromList {
			inst, err := registry.Decode(registry.DefaultPrefix, e.Origin.Name, values[e.Origin.Name])
			if err != nil || inst.Addr != e.Addr || inst.ID != e.Origin.ID || inst.Draining() != e.Draining {
				t.Fatalf("endpoint %+v does not match its value %q (%v)", e, values[e.Origin.Name], err)
			}
			if _, _, err := splitHostPort(e.Addr); err != nil {
				t.Fatalf("endpoint address: %v", err)
			}
			if i > 0 && fromList[i-1].Addr >= e.Addr {
				t.Fatalf("set not sorted with unique addresses: %+v", fromList)
			}
		}

		if again := listed.reset(kvs); len(again) != 0 {
			t.Fatalf("a re-list reported %d bad values again", len(again))
		}
		for _, kv := range kvs {
			events.del(string(kv.Key))
		}
		if eps := events.endpoints(); len(eps) != 0 {
			t.Fatalf("after deleting every key: %+v", eps)
		}
	})
}

// FuzzDNSAnswer feeds arbitrary DNS messages to the DNS resolver's answer
// parsing, as A, AAAA and SRV answers, and on to endpoints. It must never
// panic; what it rejects must be a response-code error or wrap
// ErrBadAnswer or ErrNotFound; what it accepts must be endpoints with
// valid IP:port addresses, sorted, one per address, of the family asked
// for, and for SRV only the lowest priority unless all are asked for.
// Seeds are here and in testdata/fuzz/FuzzDNSAnswer.
func FuzzDNSAnswer(f *testing.F) {
	for _, m := range dnsSeeds() {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var m dns.Msg
		if err := m.Unpack(msg); err != nil {
			return // the exchange reports ErrBadAnswer before parsing
		}
		name := "api.example.test."
		if len(m.Question) > 0 {
			name = m.Question[0].Name
		}
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			addrs, err := parseAddrAnswer(&m, name, qtype)
			if err != nil {
				checkAnswerErr(t, err)
				continue
			}
			eps := hostEndpoints(name, "443", addrs)
			checkEndpoints(t, eps)
			for _, e := range eps {
				if want := map[uint16]string{dns.TypeA: "dns-a", dns.TypeAAAA: "dns-aaaa"}[qtype]; e.Origin.Kind != want {
					t.Fatalf("%s answer gave %+v", dns.TypeToString[qtype], e)
				}
			}
		}
		ans, err := parseSRVAnswer(&m, name)
		if err != nil {
			checkAnswerErr(t, err)
			return
		}
		best := srvEndpoints(name, ans.records, ans.extra, false)
		all := srvEndpoints(name, ans.records, ans.extra, true)
		checkEndpoints(t, best)
		checkEndpoints(t, all)
		for _, e := range best {
			if e.Origin.Priority != best[0].Origin.Priority {
				t.Fatalf("several priorities delivered: %+v", best)
			}
			if !slices.ContainsFunc(all, func(a Endpoint) bool { return a.Addr == e.Addr }) {
				t.Fatalf("%s missing from all priorities", e.Addr)
			}
		}
		if (len(best) == 0) != (len(all) == 0) {
			t.Fatalf("best %v, all %v", best, all)
		}
	})
}

func checkAnswerErr(t *testing.T, err error) {
	t.Helper()
	var rc rcodeError
	if !errors.Is(err, ErrBadAnswer) && !errors.Is(err, ErrNotFound) && !errors.As(err, &rc) {
		t.Fatalf("error %v is neither a bad answer, not found, nor a response code", err)
	}
}

func checkEndpoints(t *testing.T, eps []Endpoint) {
	t.Helper()
	for i, e := range eps {
		host, port, err := splitHostPort(e.Addr)
		if err != nil {
			t.Fatalf("endpoint %q: %v", e.Addr, err)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			t.Fatalf("endpoint %q: host is not an IP address", e.Addr)
		}
		if net.JoinHostPort(host, port) != e.Addr {
			t.Fatalf("endpoint %q is not canonical", e.Addr)
		}
		if i > 0 && eps[i-1].Addr >= e.Addr {
			t.Fatalf("not sorted with unique addresses: %+v", eps)
		}
	}
}

// dnsSeeds are typical and hostile answers.
func dnsSeeds() []*dns.Msg {
	const name = "api.example.test."
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	reply := func(qtype uint16, rcode int, answer []dns.RR, extra ...dns.RR) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		m := new(dns.Msg)
		m.SetRcode(q, rcode)
		m.Answer, m.Extra = answer, extra
		return m
	}
	return []*dns.Msg{
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr(name + " 30 IN A 127.0.0.1"), rr(name + " 10 IN A 127.0.0.2")}),
		reply(dns.TypeAAAA, dns.RcodeSuccess, []dns.RR{rr(name + " 30 IN CNAME lb.example.test."), rr("lb.example.test. 5 IN AAAA ::1")}),
		reply(dns.TypeSRV, dns.RcodeSuccess,
			[]dns.RR{rr(name + " 30 IN SRV 10 5 8443 one.example.test."), rr(name + " 30 IN SRV 20 1 9000 two.example.test."), rr(name + " 30 IN SRV 0 0 0 .")},
			rr("one.example.test. 30 IN A 127.0.0.1"), rr("two.example.test. 30 IN AAAA ::2")),
		reply(dns.TypeA, dns.RcodeNameError, nil),
		reply(dns.TypeA, dns.RcodeServerFailure, nil),
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr(name + ` 30 IN TXT "garbage"`)}),
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr("wrong.invalid. 30 IN A 192.0.2.1")}),
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr(name + " 30 IN CNAME b.example.test."), rr("b.example.test. 30 IN CNAME " + name)}),
		reply(dns.TypeSRV, dns.RcodeSuccess, []dns.RR{rr(name + " 30 IN SRV 1 1 0 one.example.test.")}),
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr("example.test. 60 IN DNAME example.net."), rr(name + " 60 IN CNAME api.example.net."), rr("api.example.net. 30 IN A 127.0.0.1")}),
		reply(dns.TypeAAAA, dns.RcodeSuccess, []dns.RR{rr("example.test. 60 IN DNAME example.net."), rr("api.example.net. 30 IN AAAA ::1")}),
		reply(dns.TypeA, dns.RcodeSuccess, []dns.RR{rr("example.test. 60 IN DNAME test."), rr("api.test. 60 IN DNAME example.test.")}),
	}
}
