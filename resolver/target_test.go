package resolver_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/resolver"
)

func TestParseAcceptsTheFourSchemes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want resolver.Target
	}{
		{"etcd:///api", resolver.Target{Scheme: "etcd", Endpoint: "api"}},
		{"ETCD:///api-canary", resolver.Target{Scheme: "etcd", Endpoint: "api-canary"}},
		{"etcd:///my%20svc", resolver.Target{Scheme: "etcd", Endpoint: "my svc"}},
		{"dns:///api.example.com:443", resolver.Target{Scheme: "dns", Endpoint: "api.example.com:443"}},
		{"dns:///api.example.com.:443", resolver.Target{Scheme: "dns", Endpoint: "api.example.com.:443"}},
		{"dns:///10.0.0.1:443", resolver.Target{Scheme: "dns", Endpoint: "10.0.0.1:443"}},
		{"dns:///[2001:db8::1]:443", resolver.Target{Scheme: "dns", Endpoint: "[2001:db8::1]:443"}},
		{"dns://10.0.0.53/api.example.com:443", resolver.Target{Scheme: "dns", Authority: "10.0.0.53", Endpoint: "api.example.com:443"}},
		{"dns://[::1]:5353/api.example.com:443", resolver.Target{Scheme: "dns", Authority: "[::1]:5353", Endpoint: "api.example.com:443"}},
		{"dns+srv:///_api._tcp.example.com", resolver.Target{Scheme: "dns+srv", Endpoint: "_api._tcp.example.com"}},
		{"dns+srv://127.0.0.1:5353/_api._tcp.example.com", resolver.Target{Scheme: "dns+srv", Authority: "127.0.0.1:5353", Endpoint: "_api._tcp.example.com"}},
		{"static:///10.0.0.1:443,10.0.0.2:443", resolver.Target{Scheme: "static", Endpoint: "10.0.0.1:443,10.0.0.2:443"}},
		{"static:///[::1]:443,localhost:80", resolver.Target{Scheme: "static", Endpoint: "[::1]:443,localhost:80"}},
	} {
		got, err := resolver.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		again, err := resolver.Parse(got.String())
		if err != nil || again != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v; want the same target", tc.in, got.String(), again, err)
		}
	}
}

func TestParseRejectsMalformedTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		wantErr error
		mention string // the message must name the problem
	}{
		{"api", resolver.ErrInvalidTarget, "scheme"},
		{"://api", resolver.ErrInvalidTarget, "scheme"},
		{"etcd:api", resolver.ErrInvalidTarget, "scheme"},
		{"consul:///api", resolver.ErrUnknownScheme, `"consul"`},
		{"http://example.com/api", resolver.ErrUnknownScheme, `"http"`},
		{"etcd://", resolver.ErrInvalidTarget, "missing '/'"},
		{"etcd:///", resolver.ErrInvalidTarget, "missing service"},
		{"etcd:///a/b", resolver.ErrInvalidTarget, "contains '/'"},
		{"etcd:/// api", resolver.ErrInvalidTarget, "space"},
		{"etcd://10.0.0.1:2379/api", resolver.ErrInvalidTarget, "authority"},
		{"etcd:///api?prefix=/x", resolver.ErrInvalidTarget, "query"},
		{"etcd:///api%zz", resolver.ErrInvalidTarget, "escape"},
		{"dns:///", resolver.ErrInvalidTarget, "missing host:port"},
		{"dns:///api.example.com", resolver.ErrInvalidTarget, "missing port"},
		{"dns:///api.example.com:", resolver.ErrInvalidTarget, "port"},
		{"dns:///api.example.com:https", resolver.ErrInvalidTarget, "port"},
		{"dns:///api.example.com:70000", resolver.ErrInvalidTarget, "port"},
		{"dns:///:443", resolver.ErrInvalidTarget, "missing host"},
		{"dns:///bad..name:443", resolver.ErrInvalidTarget, "domain name"},
		{"dns+srv:///0\x97", resolver.ErrInvalidTarget, "UTF-8"}, // found by lbprobe's FuzzArgs
		{"etcd:///api%00", resolver.ErrInvalidTarget, "control character"},
		{"dns://ns.example.com/api.example.com:443", resolver.ErrInvalidTarget, "name server"},
		{"dns+srv:///", resolver.ErrInvalidTarget, "missing SRV name"},
		{"dns+srv:///_api._tcp.example.com:443", resolver.ErrInvalidTarget, "port"},
		{"static:///", resolver.ErrInvalidAddress, "missing addresses"},
		{"static:///10.0.0.1", resolver.ErrInvalidAddress, "missing port"},
		{"static:///10.0.0.1:443,", resolver.ErrInvalidAddress, "empty"},
		{"static:///10.0.0.1:443,10.0.0.1:443", resolver.ErrInvalidAddress, "twice"},
		{"static:///10.0.0.1:443, 10.0.0.2:443", resolver.ErrInvalidAddress, "white space"},
		{"static:///10.0.0.1:0", resolver.ErrInvalidAddress, "port"},
		{"static://host/10.0.0.1:443", resolver.ErrInvalidTarget, "authority"},
	} {
		_, err := resolver.Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tc.in)
			continue
		}
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("Parse(%q) = %v, want an error wrapping %v", tc.in, err, tc.wantErr)
		}
		if !strings.Contains(err.Error(), tc.mention) || !strings.HasPrefix(err.Error(), "resolver: ") {
			t.Errorf("Parse(%q) = %q, want a resolver error mentioning %q", tc.in, err, tc.mention)
		}
	}
}

func TestNewBuildsTheSchemesResolver(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for _, tc := range []struct {
		target string
		opts   []resolver.Option
		want   any // the resolver's type, nil for an error
	}{
		{"etcd:///api", []resolver.Option{resolver.WithEtcdClient(cli)}, &resolver.Etcd{}},
		{"etcd:///api", nil, nil}, // no client
		{"dns:///api.example.test:443", []resolver.Option{resolver.WithNameservers("127.0.0.1")}, &resolver.DNS{}},
		{"dns+srv:///_api._tcp.example.test", []resolver.Option{resolver.WithNameservers("127.0.0.1")}, &resolver.DNS{}},
		{"static:///127.0.0.1:1", nil, &resolver.Static{}},
		{"static:///127.0.0.1:1", []resolver.Option{resolver.WithBackoff(time.Second, 0)}, &resolver.Static{}}, // ignored
		{"bogus:///x", nil, nil},
	} {
		r, err := resolver.New(tc.target, tc.opts...)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("New(%q) succeeded", tc.target)
		case tc.want != nil && err != nil:
			t.Errorf("New(%q): %v", tc.target, err)
		case tc.want != nil && typeName(r) != typeName(tc.want):
			t.Errorf("New(%q) = %T, want %T", tc.target, r, tc.want)
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *resolver.Etcd:
		return "etcd"
	case *resolver.DNS:
		return "dns"
	case *resolver.Static:
		return "static"
	}
	return "?"
}

func TestStaticResolverDeliversSortedSetOnce(t *testing.T) {
	t.Parallel()
	ctx := timeout(t, 5*time.Second)
	r, err := resolver.NewStatic("10.0.0.2:443", "[::1]:443", "10.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, ctx, r)
	s := w.waitAddrs(t, ctx, "10.0.0.1:443", "10.0.0.2:443", "[::1]:443")
	if s.Endpoints[0].Origin.Kind != "static" {
		t.Fatalf("origin %+v, want static", s.Endpoints[0].Origin)
	}
	// The receiver owns what it gets: changing it changes nothing.
	s.Endpoints[0].Addr = "mutated"
	if got := r.Endpoints()[0].Addr; got != "10.0.0.1:443" {
		t.Fatalf("resolver's set changed to %q by its receiver", got)
	}

	eps, err := resolver.NewStaticEndpoints(
		resolver.Endpoint{Addr: "10.0.0.1:443", Weight: 2, Zone: "z1", Labels: map[string]string{"canary": "true"}},
		resolver.Endpoint{Addr: "10.0.0.2:443", Draining: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	w2 := startWatch(t, ctx, eps)
	s = w2.waitAddrs(t, ctx, "10.0.0.1:443", "10.0.0.2:443")
	if e := s.Endpoints[0]; e.Weight != 2 || e.Zone != "z1" || e.Labels["canary"] != "true" || !s.Endpoints[1].Draining {
		t.Fatalf("attributes lost: %s", describe(s))
	}
}

func TestNewStaticRejectsBadAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addrs   []string
		mention string
	}{
		{nil, "no addresses"},
		{[]string{"10.0.0.1"}, `"10.0.0.1": missing port`},
		{[]string{"10.0.0.1:443", "10.0.0.1:443"}, "twice"},
		{[]string{":443"}, "missing host"},
		{[]string{"10.0.0.1:0"}, `port "0"`},
		{[]string{"10.0.0.1:http"}, `port "http"`},
		{[]string{"10.0.0.1:443", ""}, "address 2 is empty"},
		{[]string{"[::1:443"}, "not host:port"},
	} {
		_, err := resolver.NewStatic(tc.addrs...)
		if !errors.Is(err, resolver.ErrInvalidAddress) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("NewStatic(%q) = %v, want ErrInvalidAddress mentioning %q", tc.addrs, err, tc.mention)
		}
	}
}
