package logsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"short", "kid-1", "kid-1"},
		{"exactly max", strings.Repeat("a", Max), strings.Repeat("a", Max)},
		{"one over", strings.Repeat("a", Max+1), strings.Repeat("a", Max) + "…[truncated, 257 bytes]"},
		{"46 KB kid", strings.Repeat("k", 46<<10), strings.Repeat("k", Max) + "…[truncated, 47104 bytes]"},
		// "é" is two bytes; the cut must not split it.
		{"utf-8 boundary", strings.Repeat("a", Max-1) + "é" + "b", strings.Repeat("a", Max-1) + "…[truncated, 258 bytes]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := String(tc.in)
			if got != tc.want {
				t.Fatalf("String(%d bytes) = %q, want %q", len(tc.in), got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("String(%d bytes) is not valid UTF-8", len(tc.in))
			}
			if len(got) > Max+40 {
				t.Errorf("String(%d bytes) is %d bytes long", len(tc.in), len(got))
			}
		})
	}
}

func TestStringDoesNotAllocateWhenShort(t *testing.T) {
	s := strings.Repeat("x", Max)
	if n := testing.AllocsPerRun(100, func() { _ = String(s) }); n != 0 {
		t.Fatalf("String allocated %v times for a string within Max", n)
	}
}
