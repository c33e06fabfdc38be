package token_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/token"
)

// TestMintSession checks the session claims: sid and auth_time are
// carried, and NotAfter cuts the expiry to the end of the session.
func TestMintSession(t *testing.T) {
	ks := mustKeySet(t, keyA)
	login := t0.Add(-time.Hour)
	tests := []struct {
		name     string
		notAfter time.Time
		wantExp  time.Time
		wantErr  bool
	}{
		{"session ends later", t0.Add(2 * time.Hour), t0.Add(time.Hour), false},
		{"session ends first", t0.Add(10 * time.Minute), t0.Add(10 * time.Minute), false},
		{"no session end", time.Time{}, t0.Add(time.Hour), false},
		{"session over", t0, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := token.Grant{Subject: "alice", Type: token.TypeAccess, TTL: time.Hour, Ver: "v1",
				SessionID: "fam-1", AuthTime: login, NotAfter: tt.notAfter}
			raw, c, err := token.NewSigner(ks, settings, token.Options{Now: at(t0)}).Mint(g)
			if tt.wantErr {
				if err == nil {
					t.Fatal("Mint() of a grant past its session end = nil error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.ExpiresAt.Equal(tt.wantExp) || c.SessionID != "fam-1" || c.AuthTime == nil || !c.AuthTime.Equal(login) {
				t.Errorf("claims = exp %v sid %q auth_time %v, want exp %v sid fam-1 auth_time %v", c.ExpiresAt, c.SessionID, c.AuthTime, tt.wantExp, login)
			}
			p, err := token.NewVerifier(ks, settings, token.Options{Now: at(t0)}).Verify(context.Background(), raw)
			if err != nil || p.Session != "fam-1" || !p.ExpiresAt.Equal(tt.wantExp) {
				t.Errorf("Verify() = %+v, %v; want session fam-1, expiry %v", p, err, tt.wantExp)
			}
		})
	}
}

// TestParseUnbound checks that the revocation path verifies everything but
// the binding: a token whose user was disabled can still be revoked, and a
// forged or expired one cannot be fed to it.
func TestParseUnbound(t *testing.T) {
	ks := mustKeySet(t, keyA)
	raw, _ := mint(t, ks, t0, token.Grant{Subject: "alice", Type: token.TypeRefresh, TTL: time.Hour, Ver: "v1", Family: "f"})
	b := &recordingBinding{err: errors.New("users: user disabled")}
	v := token.NewVerifier(ks, settings, token.Options{Now: at(t0), Binding: b})
	if _, err := v.Parse(context.Background(), raw, token.TypeRefresh); !errors.Is(err, authn.ErrInvalidToken) {
		t.Fatalf("Parse() with a failing binding = %v, want ErrInvalidToken", err)
	}
	b.subjects = nil
	c, err := v.ParseUnbound(raw, token.TypeRefresh)
	if err != nil || c.Family != "f" {
		t.Fatalf("ParseUnbound() = %+v, %v; want the claims", c, err)
	}
	if len(b.subjects) != 0 {
		t.Errorf("ParseUnbound() consulted the binding %d times, want 0", len(b.subjects))
	}
	late := token.NewVerifier(ks, settings, token.Options{Now: at(t0.Add(2 * time.Hour))})
	for name, tok := range map[string]string{"tampered": raw[:len(raw)-2] + "xx", "wrong type": raw} {
		typ := token.TypeRefresh
		if name == "wrong type" {
			typ = token.TypeAccess
		}
		if _, err := v.ParseUnbound(tok, typ); err == nil {
			t.Errorf("ParseUnbound(%s) = nil error", name)
		}
	}
	if _, err := late.ParseUnbound(raw, token.TypeRefresh); err == nil {
		t.Error("ParseUnbound(expired) = nil error")
	}
}
