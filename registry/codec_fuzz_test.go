package registry_test

import (
	"testing"

	"github.com/smartroute/smartroute/registry"
)

// FuzzDecode feeds arbitrary keys and values to Decode. It must never
// panic, and whatever it accepts must survive an Encode/Decode round trip
// unchanged: a reader never holds an instance that a writer could not write.
// Seeds are here and in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	seeds := []struct{ key, value string }{
		{"/services/api/10.0.0.1:443", `{"service":"api","id":"10.0.0.1:443","addr":"10.0.0.1:443","weight":2,"zone":"z1","labels":{"canary":"true"},"state":"draining"}`},
		{"/services/api/x", `{"Op":0,"Addr":"10.0.0.2:80","Metadata":null}`},
		{"/services/api/x", `{"addr":"[::1]:80"}`},
		{"/services/api/x", `{"addr":"a:1","weight":4294967296}`},
		{"/services/api/x", `{"ADDR":"a:1"}`},
		{"/services/api/x", `{"addr":"a:1","labels":{"":"x"}}`},
		{"/services/api/x", `{`},
		{"/services/api", `{"addr":"a:1"}`},
		{"/services//x", `{"addr":"a:1"}`},
	}
	for _, s := range seeds {
		f.Add(s.key, []byte(s.value))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		inst, err := registry.Decode("/services", key, value)
		if err != nil {
			return
		}
		enc, err := registry.Encode(inst)
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode refuses %+v: %v", value, inst, err)
		}
		again, err := registry.Decode("/services", key, enc)
		if err != nil {
			t.Fatalf("round trip of %+v failed: %v", inst, err)
		}
		if !again.Equal(inst) {
			t.Fatalf("round trip changed %+v into %+v", inst, again)
		}
	})
}
