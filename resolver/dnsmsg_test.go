package resolver

import (
	"errors"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseAddrAnswerFollowsDNAME(t *testing.T) {
	const name = "api.old.test."
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		answer []dns.RR
		want   []string // addresses, or nil for ErrBadAnswer
		ttl    time.Duration
	}{
		{"dname and synthesized cname", []dns.RR{rr("old.test. 60 IN DNAME new.test."), rr(name + " 60 IN CNAME api.new.test."), rr("api.new.test. 30 IN A 127.0.0.1")}, []string{"127.0.0.1"}, 30 * time.Second},
		{"dname alone", []dns.RR{rr("old.test. 10 IN DNAME new.test."), rr("api.new.test. 30 IN A 127.0.0.1")}, []string{"127.0.0.1"}, 10 * time.Second},
		{"closest dname wins", []dns.RR{rr("test. 10 IN DNAME nowhere."), rr("old.test. 10 IN DNAME new.test."), rr("api.new.test. 30 IN A 127.0.0.1")}, []string{"127.0.0.1"}, 10 * time.Second},
		{"dname then cname", []dns.RR{rr("old.test. 50 IN DNAME new.test."), rr("api.new.test. 40 IN CNAME lb.test."), rr("lb.test. 30 IN A 127.0.0.2")}, []string{"127.0.0.2"}, 30 * time.Second},
		{"stray dname", []dns.RR{rr("other.test. 10 IN DNAME new.test."), rr(name + " 30 IN A 127.0.0.1")}, nil, 0},
		{"dname at the name itself", []dns.RR{rr(name + " 10 IN DNAME new.test."), rr("api.new.test. 30 IN A 127.0.0.1")}, nil, 0},
		{"dname loop", []dns.RR{rr("old.test. 10 IN DNAME loop.test."), rr("loop.test. 10 IN DNAME old.test.")}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(name, dns.TypeA)
			m := new(dns.Msg)
			m.SetReply(q)
			m.Answer = tc.answer
			addrs, err := parseAddrAnswer(m, name, dns.TypeA)
			if tc.want == nil {
				if !errors.Is(err, ErrBadAnswer) {
					t.Fatalf("got %v, %v; want ErrBadAnswer", addrs, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(addrs) != len(tc.want) || addrs[0].ip.String() != tc.want[0] {
				t.Fatalf("addresses %v, want %v", addrs, tc.want)
			}
			if got := ttlDuration(addrs[0].ttl); got != tc.ttl {
				t.Errorf("ttl %v, want %v", got, tc.ttl)
			}
		})
	}
}
