// Package josetest builds malformed JOSE inputs for tests.
package josetest

import (
	"strings"
	"testing"
)

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// SetPaddingBit returns s, a canonical unpadded base64url string, with the
// lowest of its unused trailing bits set: the same bytes under a lenient
// decoder, spelled differently. It fails the test when s has no unused
// bits (its length is a multiple of four).
func SetPaddingBit(t testing.TB, s string) string {
	t.Helper()
	if len(s)%4 == 0 {
		t.Fatalf("josetest: %q has no unused bits", s)
	}
	i := strings.IndexByte(alphabet, s[len(s)-1])
	if i < 0 || i%2 == 1 {
		t.Fatalf("josetest: %q is not canonical base64url", s)
	}
	return s[:len(s)-1] + alphabet[i+1:i+2]
}
