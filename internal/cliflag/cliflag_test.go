package cliflag

import (
	"strings"
	"testing"
	"time"
)

func TestValuesParseAndRefuseClearly(t *testing.T) {
	var l List
	if err := l.Set(" a, ,b "); err != nil || l.String() != "a,b" {
		t.Fatalf("List: %q, %v", l.String(), err)
	}
	if err := l.Set(" , "); err == nil {
		t.Fatal("an empty list was accepted")
	}
	var d Duration
	if err := d.Set("1.5s"); err != nil || time.Duration(d) != 1500*time.Millisecond {
		t.Fatalf("Duration: %v, %v", d.String(), err)
	}
	if err := d.Set("10"); err == nil || !strings.Contains(err.Error(), "Go syntax") {
		t.Fatalf("Duration error %v", err)
	}
	var i Int
	if err := i.Set(" 42 "); err != nil || i != 42 {
		t.Fatalf("Int: %v, %v", i, err)
	}
	if err := i.Set("four"); err == nil || !strings.Contains(err.Error(), "whole number") {
		t.Fatalf("Int error %v", err)
	}
}
