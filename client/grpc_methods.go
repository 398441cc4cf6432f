package client

import (
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// methodKinds tells streaming methods from unary ones, by the service
// descriptors that generated gRPC code registers with protobuf's global
// registry. The picker asks on every pick, so recent answers sit in slots
// that a pick reads without a lock (a method name from generated code is a
// constant: comparing it is comparing a pointer); the others are kept in
// known, up to about maxKnownMethods of them (a generic proxy may see any
// number of names: past that, a method that misses its slot is looked up
// again).
type methodKinds struct {
	slots  [1 << methodSlotBits]atomic.Pointer[methodKind]
	known  sync.Map     // method name → *methodKind
	nknown atomic.Int64 // names in known
}

// methodSlotBits sizes methodKinds.slots: 64 slots, room for a few
// services' methods.
const methodSlotBits = 6

// maxKnownMethods bounds methodKinds.known.
const maxKnownMethods = 4096

type methodKind struct {
	name   string
	stream bool
}

// streaming reports whether the method named /package.Service/Method
// streams. A method whose service is not registered (hand-written
// descriptors, a generic proxy) counts as unary.
func (t *table) streaming(method string) bool {
	m := &t.methods
	// The slot is chosen by the name's last eight bytes, which tell a
	// service's methods apart ("/pkg.Svc/EmptyCall", "/pkg.Svc/UnaryCall"),
	// or by its length when shorter: one load and one multiplication,
	// written out here because a function would not be inlined.
	x := uint64(len(method))
	if len(method) >= 8 {
		x = last8(method)
	}
	slot := &m.slots[x*0x9E3779B97F4A7C15>>(64-methodSlotBits)]
	if k := slot.Load(); k != nil && k.name == method {
		return k.stream
	}
	var k *methodKind
	if v, ok := m.known.Load(method); ok {
		k = v.(*methodKind)
	} else {
		k = &methodKind{name: method, stream: lookupStreaming(method)}
		if m.nknown.Load() < maxKnownMethods {
			if v, loaded := m.known.LoadOrStore(method, k); loaded {
				k = v.(*methodKind)
			} else {
				m.nknown.Add(1)
			}
		}
	}
	slot.Store(k)
	return k.stream
}

// last8 returns the last eight bytes of s, which has at least eight, as a
// little-endian number (one load).
func last8(s string) uint64 {
	b := s[len(s)-8:]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// lookupStreaming finds the method in protobuf's registry.
func lookupStreaming(method string) bool {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return false
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	return md != nil && (md.IsStreamingClient() || md.IsStreamingServer())
}
