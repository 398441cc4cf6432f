package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/smartroute/smartroute/internal/etcdtest"
	"github.com/smartroute/smartroute/registry"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := registry.Instance{
		Service: "api", Addr: "[::1]:443", Weight: 5, Zone: "z", Version: "v",
		Labels: map[string]string{"canary": "true"}, State: registry.InstanceDraining,
	}
	val, err := registry.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := registry.Decode("", registry.Key("", "api", "[::1]:443"), val)
	if err != nil {
		t.Fatal(err)
	}
	in.ID = in.Addr
	if !out.Equal(in) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestDecodeIsLenientWhereSafe(t *testing.T) {
	t.Parallel()
	key := "/services/api/i-1"
	cases := []struct {
		name  string
		value string
		want  registry.Instance
	}{
		{"service and id from key", `{"addr":"10.0.0.1:80"}`,
			registry.Instance{Service: "api", ID: "i-1", Addr: "10.0.0.1:80"}},
		{"unknown fields ignored", `{"addr":"10.0.0.1:80","future":{"x":1},"weight":2}`,
			registry.Instance{Service: "api", ID: "i-1", Addr: "10.0.0.1:80", Weight: 2}},
		{"naming/endpoints manager value", `{"Op":0,"Addr":"10.0.0.2:81","Metadata":{"a":"b"}}`,
			registry.Instance{Service: "api", ID: "i-1", Addr: "10.0.0.2:81"}},
		{"naming/endpoints without metadata", `{"Addr":"10.0.0.2:81"}`,
			registry.Instance{Service: "api", ID: "i-1", Addr: "10.0.0.2:81"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := registry.Decode("/services", key, []byte(c.value))
			if err != nil {
				t.Fatalf("Decode(%s): %v", c.value, err)
			}
			if !got.Equal(c.want) {
				t.Fatalf("Decode(%s) = %+v, want %+v", c.value, got, c.want)
			}
		})
	}
}

func TestDecodeRejectsBadValuesWithReason(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, key, value, reason string
	}{
		{"not JSON", "/services/api/x", `not json`, "not a JSON object"},
		{"JSON array", "/services/api/x", `[1,2]`, "not a JSON object"},
		{"null", "/services/api/x", `null`, "not a JSON object"},
		{"no port", "/services/api/x", `{"addr":"10.0.0.1"}`, "missing port"},
		{"port zero", "/services/api/x", `{"addr":"10.0.0.1:0"}`, "port"},
		{"empty addr", "/services/api/x", `{"weight":1}`, "addr is empty"},
		{"weight as string", "/services/api/x", `{"addr":"a:1","weight":"heavy"}`, "weight"},
		{"negative weight", "/services/api/x", `{"addr":"a:1","weight":-1}`, "weight"},
		{"service mismatch", "/services/api/x", `{"service":"web","addr":"a:1"}`, `service "web" does not match`},
		{"id mismatch", "/services/api/x", `{"id":"y","addr":"a:1"}`, `id "y" does not match`},
		{"unknown state", "/services/api/x", `{"addr":"a:1","state":"sleepy"}`, `state "sleepy"`},
		{"endpoints delete op", "/services/api/x", `{"Op":1,"Addr":"a:1"}`, "op 1"},
		{"key outside prefix", "/other/api/x", `{"addr":"a:1"}`, "not under"},
		{"nested key", "/services/api/x/y", `{"addr":"a:1"}`, "<service>/<id>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := registry.Decode("/services", c.key, []byte(c.value))
			if !errors.Is(err, registry.ErrInvalidInstance) {
				t.Fatalf("Decode(%s): err = %v, want ErrInvalidInstance", c.value, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("Decode(%s): error %q does not say %q", c.value, err, c.reason)
			}
		})
	}
}

// TestDecodeReadsEtcdEndpointsManagerValues writes with etcd's own
// naming/endpoints manager and reads the value back with Decode.
func TestDecodeReadsEtcdEndpointsManagerValues(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	em, err := endpoints.NewManager(cli, "/services/legacy")
	if err != nil {
		t.Fatal(err)
	}
	key := "/services/legacy/10.1.2.3:9000"
	if err := em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: "10.1.2.3:9000", Metadata: map[string]string{"v": "1"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get: %v %v", resp, err)
	}
	got, err := registry.Decode("", key, resp.Kvs[0].Value)
	if err != nil {
		t.Fatalf("Decode(%s): %v", resp.Kvs[0].Value, err)
	}
	want := registry.Instance{Service: "legacy", ID: "10.1.2.3:9000", Addr: "10.1.2.3:9000"}
	if !got.Equal(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestRegisterRejectsBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cases := []struct {
		name  string
		inst  registry.Instance
		opts  []registry.Option
		field string
	}{
		{"empty service", registry.Instance{Addr: "127.0.0.1:80"}, nil, "service is empty"},
		{"address without port", registry.Instance{Service: "api", Addr: "127.0.0.1"}, nil, "addr \"127.0.0.1\""},
		{"ttl under a second", registry.Instance{Service: "api", Addr: "127.0.0.1:80"},
			[]registry.Option{registry.WithTTL(500 * time.Millisecond)}, "ttl 500ms"},
		{"slash in service", registry.Instance{Service: "a/b", Addr: "127.0.0.1:80"}, nil, "service \"a/b\" contains '/'"},
		{"bad state", registry.Instance{Service: "api", Addr: "127.0.0.1:80", State: "off"}, nil, "state \"off\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := registry.Register(ctx, cli, c.inst, c.opts...)
			if err == nil {
				r.Close(ctx)
				t.Fatalf("Register(%+v) succeeded", c.inst)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %q", err, c.field)
			}
		})
	}
	// Nothing was written for any of them.
	resp, err := cli.Get(ctx, "/services/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("bad registrations wrote %d keys", len(resp.Kvs))
	}
}

func TestKeySchema(t *testing.T) {
	t.Parallel()
	if got := registry.Key("", "api", "i1"); got != "/services/api/i1" {
		t.Errorf("Key default prefix = %q", got)
	}
	if got := registry.Key("/x/", "api", "i1"); got != "/x/api/i1" {
		t.Errorf("Key with trailing slash prefix = %q", got)
	}
	if got := registry.ServicePrefix("", "api"); got != "/services/api/" {
		t.Errorf("ServicePrefix = %q, want trailing slash", got)
	}
	if s, id, err := registry.ParseKey("", "/services/api/10.0.0.1:443"); err != nil || s != "api" || id != "10.0.0.1:443" {
		t.Errorf("ParseKey = %q %q %v", s, id, err)
	}
	if _, _, err := registry.ParseKey("", "/services/api-canary"); err == nil {
		t.Error("ParseKey accepted a key without an id")
	}
	// "/" is the root, not the default; normalizing twice changes nothing.
	for _, p := range []string{"/", "//"} {
		if got := registry.Key(p, "api", "i1"); got != "/api/i1" {
			t.Errorf("Key(%q) = %q, want /api/i1", p, got)
		}
		if got := registry.ServicePrefix(p, "api"); got != "/api/" {
			t.Errorf("ServicePrefix(%q) = %q, want /api/", p, got)
		}
		if s, id, err := registry.ParseKey(p, "/api/i1"); err != nil || s != "api" || id != "i1" {
			t.Errorf("ParseKey(%q) = %q %q %v", p, s, id, err)
		}
	}
	if a, b := registry.Key("/x", "api", "i1"), registry.Key("/x//", "api", "i1"); a != b {
		t.Errorf("trailing slashes change the key: %q, %q", a, b)
	}
}
