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
// registry. The picker asks on every pick, so recent answers sit in a few
// slots that a pick reads without a lock (a method name from generated
// code is a constant: comparing it is comparing a pointer).
type methodKinds struct {
	slots [8]atomic.Pointer[methodKind]
	known sync.Map // method name → *methodKind
}

type methodKind struct {
	name   string
	stream bool
}

// streaming reports whether the method named /package.Service/Method
// streams. A method whose service is not registered (hand-written
// descriptors, a generic proxy) counts as unary.
func (t *table) streaming(method string) bool {
	m := &t.methods
	slot := &m.slots[len(method)&7]
	if k := slot.Load(); k != nil && k.name == method {
		return k.stream
	}
	var k *methodKind
	if v, ok := m.known.Load(method); ok {
		k = v.(*methodKind)
	} else {
		k = &methodKind{name: method, stream: lookupStreaming(method)}
		if v, loaded := m.known.LoadOrStore(method, k); loaded {
			k = v.(*methodKind)
		}
	}
	slot.Store(k)
	return k.stream
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
