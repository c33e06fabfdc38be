package users

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/authgate/authn/token"
)

// claims are the claims of a token for subject with ver, issued at iat
// and carrying roles.
func claims(subject, ver string, iat time.Time, roles ...string) *token.Claims {
	return &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: subject, IssuedAt: jwt.NewNumericDate(iat)},
		Ver:              ver,
		Roles:            token.NormalizeRoles(roles),
	}
}

// Cost-10 hashes computed once, so tests do not pay for bcrypt.
const (
	hashAlice    = "$2a$10$5jz4w8FMsn3uXXdXWZzxkO5RF2fec3u8Zo1e.K5RgVgbx.jnZnIim" // alice-pw
	hashAliceNew = "$2a$10$tiNUc85EIk1I.O6Q9bPIbOePKlMXo0FBndErcnHstIG9FjRihZEK6" // alice-new-pw
	hashBob      = "$2a$10$gzyIN2BCCbRMQ/MC1fVsG.jNNbks6HbE2v4mAcodQclqnuOK7zBXO" // bob-pw
)

func mustParse(t testing.TB, data string) *Set {
	t.Helper()
	s, err := Parse("users.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	return s
}

func TestParse(t *testing.T) {
	s := mustParse(t, `users:
  - username: " Alice "
    password_hash: "`+hashAlice+`"
    roles: [admin, user, admin]
  - username: bob
    password_hash: "`+hashBob+`"
    disabled: true
`)
	if got := s.Len(); got != 2 {
		t.Fatalf("Len() = %d, want 2", got)
	}
	u, ok := s.Lookup("ALICE")
	if !ok {
		t.Fatal(`Lookup("ALICE") found nothing, want alice`)
	}
	if u.Username != "alice" || u.Line != 2 || u.Disabled || u.Cost() != 10 {
		t.Errorf("alice = %+v, want username alice, line 2, enabled, cost 10", u)
	}
	if got := strings.Join(u.Roles, ","); got != "admin,user" {
		t.Errorf("alice roles = %q, want admin,user", got)
	}
	if u.Ver() != Fingerprint(hashAlice) || len(u.Ver()) != 16 {
		t.Errorf("alice Ver() = %q, want 16 hex chars of the hash digest", u.Ver())
	}
	if b, _ := s.Lookup("bob"); !b.Disabled {
		t.Error("bob.Disabled = false, want true")
	}
	if got := strings.Join(s.Roles(), ","); got != "admin,user" {
		t.Errorf("Roles() = %q, want admin,user", got)
	}
	if s.MaxCost() != 10 {
		t.Errorf("MaxCost() = %d, want 10", s.MaxCost())
	}
	if Fingerprint(hashAlice) == Fingerprint(hashAliceNew) {
		t.Error("a new password hash kept the same fingerprint")
	}
}

func TestParseErrors(t *testing.T) {
	lowCost, err := bcrypt.GenerateFromPassword([]byte("x"), 4)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"empty file", "", []string{"users.yaml: file is empty"}},
		{"unknown field", "users:\n  - username: a\n    password_hash: \"" + hashAlice + "\"\n    role: [x]\n",
			[]string{"users.yaml:4:", `unknown key "role"`}},
		{"empty username", "users:\n  - username: \" \"\n    password_hash: \"" + hashAlice + "\"\n",
			[]string{"users.yaml:2: user 1 (): field username: must not be empty"}},
		{"duplicate after normalization", "users:\n  - username: alice\n    password_hash: \"" + hashAlice + "\"\n  - username: ALICE\n    password_hash: \"" + hashBob + "\"\n",
			[]string{"users.yaml:4: user 2 (alice): field username: duplicate of the user on line 2"}},
		{"not bcrypt", "users:\n  - username: a\n    password_hash: plain\n",
			[]string{"users.yaml:2: user 1 (a): field password_hash: not a bcrypt hash"}},
		{"cost too low", "users:\n  - username: a\n    password_hash: \"" + string(lowCost) + "\"\n",
			[]string{"users.yaml:2: user 1 (a): field password_hash: bcrypt cost 4 is below the minimum 10"}},
		{"control character", "users:\n  - username: \"a\\x01b\"\n    password_hash: \"" + hashAlice + "\"\n",
			[]string{"field username: must not contain control characters"}},
		{"empty role", "users:\n  - username: a\n    password_hash: \"" + hashAlice + "\"\n    roles: [\"\"]\n",
			[]string{`field roles: role "" must be non-empty`}},
		{"every error reported", "users:\n  - username: \"\"\n    password_hash: x\n  - username: b\n    password_hash: y\n",
			[]string{"users.yaml:2: user 1", "users.yaml:4: user 2 (b): field password_hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("users.yaml", []byte(tt.data))
			if err == nil {
				t.Fatal("Parse() error = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseNoUsers(t *testing.T) {
	s := mustParse(t, "users: []\n")
	if s.Len() != 0 {
		t.Errorf("Len() = %d, want 0", s.Len())
	}
}

func TestCheckBinding(t *testing.T) {
	set := mustParse(t, `users:
  - username: alice
    password_hash: "`+hashAlice+`"
  - username: bob
    password_hash: "`+hashBob+`"
    disabled: true
`)
	var zero Store
	var st Store
	st.Swap(set)
	alice, _ := set.Lookup("alice")
	bob, _ := set.Lookup("bob")
	tests := []struct {
		name    string
		store   *Store
		subject string
		ver     string
		want    error
	}{
		{"user with current ver", &st, "alice", alice.Ver(), nil},
		{"user with stale ver", &st, "alice", Fingerprint(hashAliceNew), ErrStale},
		{"disabled user", &st, "bob", bob.Ver(), ErrDisabled},
		{"deleted user", &st, "carol", alice.Ver(), ErrUnknownUser},
		{"service name", &st, "billing", "", nil},
		{"service token naming a user", &st, "alice", "", ErrNotService},
		{"service token naming a user in another case", &st, "Alice", "", ErrNotService},
		{"zero store, service token", &zero, "billing", "", nil},
		{"zero store, user token", &zero, "alice", alice.Ver(), ErrUnknownUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.store.CheckBinding(context.Background(), claims(tt.subject, tt.ver, time.Now()))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("CheckBinding(%q, %q) = %v, want %v", tt.subject, tt.ver, err, tt.want)
			}
		})
	}
}

func TestCheckBindingAfterPasswordChange(t *testing.T) {
	var st Store
	st.Swap(mustParse(t, "users:\n  - username: alice\n    password_hash: \""+hashAlice+"\"\n"))
	old, _ := st.Load().Lookup("alice")
	oldVer := old.Ver()
	st.Swap(mustParse(t, "users:\n  - username: alice\n    password_hash: \""+hashAliceNew+"\"\n"))
	if err := st.CheckBinding(context.Background(), claims("alice", oldVer, time.Now())); !errors.Is(err, ErrStale) {
		t.Errorf("CheckBinding(alice, old ver) after password change = %v, want ErrStale", err)
	}
}

func TestHashPassword(t *testing.T) {
	tests := []struct {
		name     string
		password []byte
		cost     int
		wantErr  string
	}{
		{"ok", []byte("secret"), 10, ""},
		{"exactly 72 bytes", bytes.Repeat([]byte("a"), 72), 10, ""},
		{"73 bytes", bytes.Repeat([]byte("a"), 73), 10, "password is 73 bytes; bcrypt uses at most 72"},
		{"empty", nil, 10, "empty password"},
		{"cost too low", []byte("x"), 9, "cost 9 out of range"},
		{"cost too high", []byte("x"), 17, "cost 17 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := HashPassword(tt.password, tt.cost)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("HashPassword() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("HashPassword() error = %v", err)
			}
			if c, _ := bcrypt.Cost([]byte(h)); c != tt.cost {
				t.Errorf("cost = %d, want %d", c, tt.cost)
			}
			if bcrypt.CompareHashAndPassword([]byte(h), tt.password) != nil {
				t.Error("hash does not match its password")
			}
		})
	}
}
