package client

import (
	"testing"
	"unsafe"
)

// The hot block is two cache lines, no more: a pick reads one per
// candidate.
func TestHotStateIs128Bytes(t *testing.T) {
	if got := unsafe.Sizeof(hotState{}); got != 128 {
		t.Fatalf("hotState is %d bytes, want 128", got)
	}
}
