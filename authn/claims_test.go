package authn_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/authn"
)

func TestClaimText(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`"alice@example.com"`, "alice@example.com", true},
		{`"Alice Smith"`, "Alice Smith", true},
		{`"Zoë"`, "Zoë", true},
		{`"a,b"`, "a,b", true}, // a string is not a list
		{`42`, "42", true},
		{`1.5e3`, "1.5e3", true},
		{`true`, "true", true},
		{`["staff","admins"]`, "staff,admins", true},
		{`["CN=admins,OU=groups"]`, "CN=admins%2COU=groups", true},
		{`"line\r\nX-Auth-Roles: admin"`, "line%0D%0AX-Auth-Roles: admin", true},
		{`"nul\u0000"`, "nul%00", true},
		{`"100%"`, "100%25", true},
		{`" padded "`, "%20padded%20", true},
		{`[1,true,"x"]`, "1,true,x", true},
		{`null`, "", false},
		{`{"a":1}`, "", false},
		{`[]`, "", false},
		{`[["nested"]]`, "", false},
		{`[{"a":1}]`, "", false},
		{`"` + strings.Repeat("x", authn.MaxClaimText+1) + `"`, "", false},
	}
	for _, tt := range tests {
		got, ok := authn.ClaimText(json.RawMessage(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("ClaimText(%.40s) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClaimPaths(t *testing.T) {
	cp, err := authn.NewClaimPaths([]string{"email", `org.my\.unit`, "email"})
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]json.RawMessage{"email": json.RawMessage(`"a@x"`)}
	var asked [][]string
	got := cp.Extract(func(segs []string) (json.RawMessage, bool, error) {
		asked = append(asked, segs)
		return authn.TopLevel(raw)(segs)
	})
	if len(got) != 1 || got["email"] != "a@x" || len(asked) != 2 || strings.Join(asked[1], "|") != "org|my.unit" {
		t.Errorf("Extract() = %v, lookups %q", got, asked)
	}
	if _, err := authn.NewClaimPaths([]string{"a..b"}); err == nil {
		t.Error("an empty segment was accepted")
	}
}

// FuzzClaimText: whatever a token holds, the header value has no control
// character, no leading or trailing space, items never hold a comma, and
// decoding gives back what the token said.
func FuzzClaimText(f *testing.F) {
	for _, s := range []string{`"a"`, `["a,b","c\n"]`, `"%2C"`, `[" x ",1]`, `"\u007f"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := authn.ClaimText(json.RawMessage(in))
		if !ok {
			return
		}
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] == 0x7f {
				t.Fatalf("ClaimText(%q) = %q: control character", in, out)
			}
		}
		if strings.HasPrefix(out, " ") || strings.HasSuffix(out, " ") {
			t.Fatalf("ClaimText(%q) = %q: outer space", in, out)
		}
		var list []any
		if json.Unmarshal([]byte(in), &list) == nil {
			items := strings.Split(out, ",")
			if len(items) != len(list) {
				t.Fatalf("ClaimText(%q) = %q: %d items, want %d", in, out, len(items), len(list))
			}
			for i, it := range items {
				if s, isStr := list[i].(string); isStr {
					if dec, err := url.PathUnescape(it); err != nil || dec != s {
						t.Fatalf("item %d of %q decodes to %q (%v), want %q", i, out, dec, err, s)
					}
				}
			}
			return
		}
		var s string
		if json.Unmarshal([]byte(in), &s) == nil {
			if dec, err := url.PathUnescape(out); err != nil || dec != s {
				t.Fatalf("ClaimText(%q) = %q decodes to %q (%v)", in, out, dec, err)
			}
		}
	})
}
