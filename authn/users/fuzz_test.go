package users

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func FuzzUsersParse(f *testing.F) {
	f.Add("users:\n  - username: alice\n    password_hash: \"" + hashAlice + "\"\n    roles: [admin]\n")
	f.Add("users:\n  - username: \" Alice \"\n    password_hash: \"" + hashAlice + "\"\n  - username: alice\n    password_hash: \"" + hashBob + "\"\n")
	f.Add("users:\n  - username: ALICE\n    password_hash: \"" + hashAlice + "\"\n  - username: bob\n    password_hash: \"" + hashBob + "\"\n    disabled: true\n")
	f.Add("users:\n  - username: \"K\u212a\"\n    password_hash: \"" + hashAlice + "\"\n  - username: kk\n    password_hash: \"" + hashBob + "\"\n")
	f.Add("users:\n  - username: \"\u0130\"\n    password_hash: \"" + hashAlice + "\"\n")
	f.Add("users:\n  - username: \"a\\u0085\"\n    password_hash: \"" + hashAlice + "\"\n")
	f.Add("users:\n  - username: alice\n    password_hash: \"$2a$04$abcdefghijklmnopqrstuu\"\n")
	f.Add("users: []\n")
	f.Add("users:\n  - username: a\n    passwd: x\n")
	f.Add("")

	f.Fuzz(func(t *testing.T, data string) {
		s, err := Parse("users.yaml", []byte(data))
		if err != nil {
			if s != nil {
				t.Fatalf("Parse() returned a set along with error %v", err)
			}
			return
		}
		names := s.Usernames()
		if s.Len() != len(names) || len(s.byName) != len(names) {
			t.Fatalf("Len() = %d, %d usernames, %d users by name: want them equal", s.Len(), len(names), len(s.byName))
		}
		seen := map[string]bool{}
		for _, name := range names {
			// Login normalizes what the caller typed; a stored name that
			// is not already in that form could never be looked up, and
			// two names with one form would be one account.
			if n := Normalize(name); n != name {
				t.Fatalf("username %q is stored unnormalized (normalizes to %q)", name, n)
			}
			if seen[name] {
				t.Fatalf("username %q accepted twice", name)
			}
			seen[name] = true
			if name == "" || len(name) > MaxUsernameBytes || !utf8.ValidString(name) {
				t.Fatalf("username %q accepted", name)
			}
			if strings.ContainsFunc(name, unicode.IsControl) {
				t.Fatalf("username %q with a control character accepted", name)
			}
			u, ok := s.Lookup(name)
			if !ok || u.Username != name {
				t.Fatalf("Lookup(%q) = %v, %v; want that user", name, u, ok)
			}
			if up, ok := s.Lookup(" " + name + "\t"); !ok || up != u {
				t.Fatalf("Lookup(%q with surrounding space) = %v, %v; want the same user", name, up, ok)
			}
			if u.Cost() < MinCost || u.Cost() > MaxCost {
				t.Fatalf("user %q accepted with bcrypt cost %d", name, u.Cost())
			}
			for _, r := range u.Roles {
				if r == "" || r != strings.TrimSpace(r) {
					t.Fatalf("user %q accepted with role %q", name, r)
				}
			}
		}
	})
}
