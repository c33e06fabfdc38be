package issuer

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/authn/users"
)

// withMaxAge sets the session max age of a fixture.
func withMaxAge(d time.Duration) fixtureOpt {
	return func(o *Options, _ *hooks) { o.RefreshMaxAge = d }
}

// TestRefreshMaxAge refreshes a session every 50 minutes: each rotation
// renews the refresh token but never the login, no token outlives the
// session, and the first refresh after the max age is refused with
// invalid_grant.
func TestRefreshMaxAge(t *testing.T) {
	f := newFixture(t, withMaxAge(3*time.Hour)) // refresh ttl 1h, access ttl 15m
	ctx := context.Background()
	login := f.clk.Now()
	end := login.Add(3 * time.Hour)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	first, err := f.verifier.Parse(ctx, tr.RefreshToken, token.TypeRefresh)
	if err != nil {
		t.Fatal(err)
	}
	for f.clk.Now().Add(50 * time.Minute).Before(end) {
		f.clk.Advance(50 * time.Minute)
		tr = f.mustTokens(f.refresh(tr.RefreshToken))
		rc, err := f.verifier.Parse(ctx, tr.RefreshToken, token.TypeRefresh)
		if err != nil {
			t.Fatal(err)
		}
		ac, err := f.verifier.Parse(ctx, tr.AccessToken, token.TypeAccess)
		if err != nil {
			t.Fatal(err)
		}
		if rc.AuthTime == nil || !rc.AuthTime.Equal(login) || ac.AuthTime == nil || !ac.AuthTime.Equal(login) {
			t.Errorf("auth_time after rotation = %v / %v, want the login %v", rc.AuthTime, ac.AuthTime, login)
		}
		if ac.SessionID != first.Family || rc.Family != first.Family {
			t.Errorf("access sid %q, refresh family %q; want the login's family %q", ac.SessionID, rc.Family, first.Family)
		}
		if rc.ExpiresAt.After(end) || ac.ExpiresAt.After(end) {
			t.Errorf("refresh exp %v, access exp %v outlive the session end %v", rc.ExpiresAt, ac.ExpiresAt, end)
		}
		if want := ac.ExpiresAt.Sub(ac.IssuedAt.Time) / time.Second; tr.ExpiresIn != int64(want) {
			t.Errorf("expires_in = %d, want %d (the access token's real lifetime)", tr.ExpiresIn, want)
		}
	}
	// 2h30m into the session: the last access token is cut to the end.
	if got := f.clk.Now(); !got.Equal(login.Add(150 * time.Minute)) {
		t.Fatalf("clock at %v, want 2h30m after login", got)
	}
	if tr.ExpiresIn != int64((15 * time.Minute).Seconds()) {
		t.Errorf("expires_in 30 minutes before the end = %d, want the full 900", tr.ExpiresIn)
	}
	f.clk.Advance(25 * time.Minute) // 5 minutes left
	tr = f.mustTokens(f.refresh(tr.RefreshToken))
	if tr.ExpiresIn != 300 {
		t.Errorf("expires_in 5 minutes before the end = %d, want 300", tr.ExpiresIn)
	}
	f.clk.Advance(5 * time.Minute) // exactly at the end
	w := f.refresh(tr.RefreshToken)
	if w.Code != http.StatusBadRequest || errorCode(t, w) != "invalid_grant" {
		t.Errorf("refresh at the session end = %d %s, want 400 invalid_grant", w.Code, w.Body)
	}
	if n := f.logs.FilterField(stringField("reason", reasonSessionExpired)).Len(); n != 1 {
		t.Errorf("session_expired audit events = %d, want 1", n)
	}
}

// TestRefreshMaxAgeLegacyToken refreshes a refresh token minted without
// auth_time: its session counts from its own iat.
func TestRefreshMaxAgeLegacyToken(t *testing.T) {
	f := newFixture(t, withMaxAge(2*time.Hour))
	u, _ := f.users.Load().Lookup("alice")
	raw, c, err := f.signer.Mint(token.Grant{Subject: "alice", Type: token.TypeRefresh, TTL: time.Hour, Ver: u.Ver(), Family: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.mem.StartFamily(context.Background(), "legacy", c.ID, c.ExpiresAt.Time); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(50 * time.Minute)
	tr := f.mustTokens(f.refresh(raw))
	rc, _ := f.verifier.Parse(context.Background(), tr.RefreshToken, token.TypeRefresh)
	if rc == nil || rc.AuthTime == nil || !rc.AuthTime.Equal(c.IssuedAt.Time) {
		t.Errorf("auth_time of the rotated legacy token = %v, want its iat %v", rc, c.IssuedAt)
	}
	f.clk.Advance(time.Hour + 10*time.Minute)
	if w := f.refresh(tr.RefreshToken); w.Code != http.StatusBadRequest {
		t.Errorf("refresh of a legacy session past the max age = %d, want 400", w.Code)
	}
}

func TestRefreshMaxAgeValidation(t *testing.T) {
	_, err := New(Options{Users: &users.Store{}, Signer: &token.Signer{}, Verifier: &token.Verifier{}, State: nil,
		RefreshTTL: 2 * time.Hour, RefreshMaxAge: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "refresh ttl 2h0m0s is longer than the refresh max age 1h0m0s") {
		t.Errorf("New(refresh ttl > max age) error = %v", err)
	}
}

// TestLogoutRevokesWhateverTheUserStanding logs out after the user was
// disabled, deleted or given a new password: the session is revoked all
// the same, so undoing the edit does not bring it back.
func TestLogoutRevokesWhateverTheUserStanding(t *testing.T) {
	tests := []struct {
		name string
		edit string
	}{
		{"disabled", strings.Replace(usersYAML, "roles: [admin, user]\n", "roles: [admin, user]\n    disabled: true\n", 1)},
		{"deleted", "users:\n  - username: carol\n    password_hash: \"" + hashCarol + "\"\n"},
		{"password changed", strings.Replace(usersYAML, hashAlice, hashAliceNew, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			tr := f.mustTokens(f.login("alice", "alice-pw"))
			ac, _ := f.verifier.Parse(ctx, tr.AccessToken, token.TypeAccess)
			rc, _ := f.verifier.Parse(ctx, tr.RefreshToken, token.TypeRefresh)
			f.users.Swap(parseUsers(t, tt.edit))
			w := f.do(request{path: "/auth/logout", body: form("refresh_token", tr.RefreshToken),
				header: http.Header{"Authorization": {"Bearer " + tr.AccessToken}}})
			if w.Code != http.StatusOK {
				t.Fatalf("logout = %d %s, want 200", w.Code, w.Body)
			}
			if revoked, err := f.mem.AccessRevoked(ctx, ac.ID, ""); err != nil || !revoked {
				t.Errorf("access token jti revoked = %v, %v; want true", revoked, err)
			}
			if revoked, err := f.mem.AccessRevoked(ctx, "another-access-token", rc.Family); err != nil || !revoked {
				t.Errorf("family revoked for the session's other access tokens = %v, %v; want true", revoked, err)
			}
			if err := f.mem.Rotate(ctx, rc.Family, rc.ID, "next", f.clk.Now().Add(time.Hour)); err == nil {
				t.Error("Rotate() of the logged-out family = nil, want it revoked")
			}
			if n := f.logs.FilterField(stringField("event", "logout")).FilterField(stringField("subject", "alice")).Len(); n != 1 {
				t.Errorf("logout audit events naming alice = %d, want 1", n)
			}
		})
	}
}

// TestRefreshWhileStandingPending answers 503 (not invalid_grant, which
// would make the client throw its token away) while the user's standing
// cannot be recorded in the state store.
func TestRefreshWhileStandingPending(t *testing.T) {
	f := newFixture(t)
	tr := f.mustTokens(f.login("alice", "alice-pw"))
	// A users store whose ledger is down: its users wait.
	failing := &failingLedger{}
	st := &users.Store{}
	st.Swap(f.users.Load())
	if err := st.Track(failing, users.TrackOptions{Keep: time.Hour, Now: f.clk.Now}); err == nil {
		t.Fatal("Track() on a failing ledger = nil, want an error")
	}
	f.is.users = st
	w := f.refresh(tr.RefreshToken)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("refresh while the standing is pending = %d %s, want 503 with Retry-After", w.Code, w.Body)
	}
}

var errUnavailableLedger = state.ErrUnavailable

// failingLedger fails every call like a state store that is down.
type failingLedger struct{}

func (failingLedger) RaiseNotBefore(context.Context, map[string]time.Time, time.Duration) error {
	return errUnavailableLedger
}

func (failingLedger) NotBefore(context.Context, []string) (map[string]time.Time, error) {
	return nil, errUnavailableLedger
}
