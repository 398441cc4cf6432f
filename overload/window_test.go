package overload

import (
	"testing"
	"time"
)

func TestWindowSumsTheBucketsOfTheWindowOnly(t *testing.T) {
	sec := int64(time.Second)
	w := newWindow(sec, 10) // 10 s in 1 s buckets
	for i := range int64(15) {
		w.add(i*sec, 1, uint64(i%2))
	}
	// At 14.5 s the window holds seconds 5..14: 10 counts, 5 odd seconds.
	a, b := w.sum(14*sec + sec/2)
	if a != 10 || b != 5 {
		t.Fatalf("sum = %d, %d; want 10, 5", a, b)
	}
	// Three idle seconds later, seconds 5..7 have slid out.
	if a, b = w.sum(17*sec + sec/2); a != 7 || b != 3 {
		t.Fatalf("after 3 idle seconds sum = %d, %d; want 7, 3", a, b)
	}
	// Long idle: nothing left, and stale buckets are not read as current.
	if a, b = w.sum(100 * sec); a != 0 || b != 0 {
		t.Fatalf("after a long idle sum = %d, %d; want 0, 0", a, b)
	}
	w.add(100*sec, 2, 1)
	if a, b = w.sum(100 * sec); a != 2 || b != 1 {
		t.Fatalf("fresh bucket sum = %d, %d; want 2, 1", a, b)
	}
}

func TestWindowCountsWithinTheCurrentSlotAfterCaching(t *testing.T) {
	sec := int64(time.Second)
	w := newWindow(sec, 4)
	w.add(0, 1, 0)
	w.add(sec, 1, 0)
	if a, _ := w.sum(sec); a != 2 {
		t.Fatalf("sum = %d; want 2", a)
	}
	// The closed buckets are cached; new counts in the current one still show.
	w.add(sec+1, 3, 3)
	if a, b := w.sum(sec + 2); a != 5 || b != 3 {
		t.Fatalf("sum = %d, %d; want 5, 3", a, b)
	}
}

func TestWindowResetForgetsEverythingBefore(t *testing.T) {
	sec := int64(time.Second)
	w := newWindow(sec, 10)
	for i := range int64(5) {
		w.add(i*sec, 4, 4)
	}
	w.reset(4*sec + 1)
	if a, b := w.sum(4*sec + 2); a != 0 || b != 0 {
		t.Fatalf("after reset sum = %d, %d; want 0, 0", a, b)
	}
	w.add(5*sec, 1, 0)
	if a, b := w.sum(5 * sec); a != 1 || b != 0 {
		t.Fatalf("after reset and one count sum = %d, %d; want 1, 0", a, b)
	}
}

func TestWindowDropsLateCountsForAReusedBucket(t *testing.T) {
	sec := int64(time.Second)
	w := newWindow(sec, 2)
	w.add(5*sec, 1, 0)
	w.add(3*sec, 7, 7) // same bucket index, older slot
	if a, _ := w.sum(5 * sec); a != 1 {
		t.Fatalf("sum = %d; want 1 (the late count dropped)", a)
	}
}
