package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/authn/issuer"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/authn/token"
	"github.com/authgate/authgate/internal/config"
)

// End-to-end tests of the credential lifetime model: a token, a session and
// a tunnel all end at the earliest of expiry, the session's absolute age, a
// logout, a detected reuse, a disable, a delete, a password change or a role
// removal, on every replica and across restarts. Each runs through the
// gateway on real listeners, with the embedded store (persisted to a state
// file) and with a real Redis.

// lifeBackend opens gateways on one kind of state store. Gateways opened
// with the same state name share their state, as replicas of a deployment
// (Redis) or successive runs of one gateway (the embedded store's file).
type lifeBackend struct {
	name string
	sec  config.Secrets
	// state returns the option that puts a gateway on the named state.
	state func(name string) envOption
}

// lifeBackends returns the embedded store persisted to a state file and,
// unless -short, Redis when redis-server is installed (or CI requires it).
func lifeBackends(t *testing.T) []lifeBackend {
	t.Helper()
	dir := t.TempDir()
	bs := []lifeBackend{{name: "embedded", sec: config.Secrets{JWT: []byte(testSecret)}, state: func(name string) envOption {
		return func(c *config.Config) { c.Auth.StateFile = filepath.Join(dir, name+".json") }
	}}}
	if testing.Short() {
		t.Log("-short: the Redis cases are skipped")
		return bs
	}
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") != "true" {
		t.Log("redis-server not installed: the Redis cases are skipped (apt-get install -y redis-server)")
		return bs
	}
	srv := statetest.StartServer(t)
	return append(bs, redisBackend(srv, "life"))
}

// redisBackend is the Redis backend on srv, with key prefixes under base.
func redisBackend(srv *statetest.Server, base string) lifeBackend {
	return lifeBackend{name: "redis", sec: config.Secrets{JWT: []byte(testSecret), RedisURL: srv.URL(0)}, state: func(name string) envOption {
		return func(c *config.Config) {
			c.Redis.KeyPrefix = base + ":" + name + ":"
			// Generous: these tests are about lifetimes, not a slow store.
			c.Redis.Timeout = 2 * time.Second
			c.Auth.StateTimeout = 3 * time.Second
		}
	}}
}

// fresh returns a state name used once.
func fresh() string { return fmt.Sprintf("s%d", freshN.Add(1)) }

var freshN atomic.Int64

// aliceEntry is alice's entry in a lifecycle users file.
type aliceEntry struct {
	password   string // default alice-password-1
	roles      string // default [admin, user]
	disabled   bool
	deleted    bool
	validAfter time.Time
	bobRoles   string // default [user]
	bobOff     bool   // bob disabled
}

// lifeUsers renders a users file with alice as given, bob and carol.
func lifeUsers(t *testing.T, a aliceEntry) string {
	t.Helper()
	if a.password == "" {
		a.password = "alice-password-1"
	}
	if a.roles == "" {
		a.roles = "[admin, user]"
	}
	if a.bobRoles == "" {
		a.bobRoles = "[user]"
	}
	var b strings.Builder
	b.WriteString("users:\n")
	if !a.deleted {
		b.WriteString("  - username: alice\n    password_hash: \"" + hashOf(t, a.password) + "\"\n    roles: " + a.roles + "\n")
		if a.disabled {
			b.WriteString("    disabled: true\n")
		}
		if !a.validAfter.IsZero() {
			b.WriteString("    tokens_valid_after: " + a.validAfter.UTC().Format(time.RFC3339) + "\n")
		}
	}
	b.WriteString("  - username: bob\n    password_hash: \"" + hashOf(t, "bob-password-1") + "\"\n    roles: " + a.bobRoles + "\n")
	if a.bobOff {
		b.WriteString("    disabled: true\n")
	}
	b.WriteString("  - username: carol\n    password_hash: \"" + hashOf(t, "carol-password-1") + "\"\n    roles: [user]\n")
	return b.String()
}

// lifeEnv starts a gateway of backend b on the named state (a fresh one
// when empty) and the users file usersFile (its own when empty).
func lifeEnv(t *testing.T, b lifeBackend, stateName, usersFile string, handler http.Handler, opts ...envOption) *gwEnv {
	t.Helper()
	if stateName == "" {
		stateName = fresh()
	}
	if usersFile == "" {
		usersFile = filepath.Join(t.TempDir(), "users.yaml")
		writeFile(t, usersFile, lifeUsers(t, aliceEntry{}))
	}
	e := newEnvSecrets(t, b.sec, "", handler, append([]envOption{b.state(stateName), func(c *config.Config) { c.UsersFile = usersFile }}, opts...)...)
	return e
}

func (e *gwEnv) usersFile() string { return e.app.Config().UsersFile }

// edit rewrites e's users file and waits until the gateway has loaded it.
func (e *gwEnv) edit(a aliceEntry) {
	e.t.Helper()
	loaded := e.usersReloads()
	writeFile(e.t, e.usersFile(), lifeUsers(e.t, a))
	deadline := time.Now().Add(5 * time.Second)
	for e.usersReloads() == loaded {
		if time.Now().After(deadline) {
			e.t.Fatal("the users file edit was not loaded within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// usersReloads counts the successful loads of the users file.
func (e *gwEnv) usersReloads() float64 {
	return counterValue(e.t, e.app.Registry(), "authgate_file_reload_total", map[string]string{"file": "users", "result": "success"})
}

// awaitCode polls fn until it returns want, failing after 5s.
func awaitCode(t *testing.T, what string, want int, fn func() int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := fn()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d within 5s", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refreshCode refreshes rt and returns only the status.
func (e *gwEnv) refreshCode(rt string) int {
	code, _ := e.refresh(rt)
	return code
}

// unverified returns the claims of a gateway token without verifying it.
func unverified(t *testing.T, raw string) *token.Claims {
	t.Helper()
	var c token.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestE2ELifecycleTransitions takes alice through every edit of the users
// file with an access token, a refresh token and an `authgate token` token
// minted before it, and checks all three after the edit and after it is
// undone. A disable, a delete, a password change and a tokens_valid_after
// end them for good: undoing the edit (re-enable, re-add with the same
// hash, revert the password, drop the field) does not bring them back. A
// role removal ends every token that carries the role while the user lacks
// it; a promotion needs nothing.
func TestE2ELifecycleTransitions(t *testing.T) {
	tests := []struct {
		name       string
		edit, undo aliceEntry
		// want: access token on /api, refresh, admin-tool token on /api
		afterEdit, afterUndo [3]int
	}{
		{name: "disable, re-enable", edit: aliceEntry{disabled: true},
			afterEdit: [3]int{401, 400, 401}, afterUndo: [3]int{401, 400, 401}},
		{name: "delete, re-add with the same hash", edit: aliceEntry{deleted: true},
			afterEdit: [3]int{401, 400, 401}, afterUndo: [3]int{401, 400, 401}},
		{name: "password change, revert", edit: aliceEntry{password: "alice-password-2"},
			afterEdit: [3]int{401, 400, 401}, afterUndo: [3]int{401, 400, 401}},
		// The instant is set when the edit is written (see below).
		{name: "tokens_valid_after, then removed", edit: aliceEntry{validAfter: time.Unix(1, 0)},
			afterEdit: [3]int{401, 400, 401}, afterUndo: [3]int{401, 400, 401}},
		// The tokens carry admin; without it they are refused everywhere.
		// A refresh mints tokens with the current roles. Restoring the
		// role makes the old access token acceptable again: roles are
		// checked per request, like Kubernetes RBAC, not revoked.
		{name: "demote, restore", edit: aliceEntry{roles: "[user]"},
			afterEdit: [3]int{401, 200, 401}, afterUndo: [3]int{200, 200, 200}},
		{name: "promote, demote back", edit: aliceEntry{roles: "[admin, reader, user]"},
			afterEdit: [3]int{200, 200, 200}, afterUndo: [3]int{200, 200, 200}},
	}
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					e := lifeEnv(t, b, "", "", nil)
					tr := e.login("alice", "alice-password-1")
					admin, _, err := issuer.MintFor(e.app.Signer(), e.app.Users().Load(), "alice", nil, time.Hour)
					if err != nil {
						t.Fatal(err)
					}
					registerSecret(admin)
					for _, tok := range []string{tr.AccessToken, admin} {
						if got := e.bearerStatus("/admin/x", tok); got != 200 {
							t.Fatalf("before the edit: /admin/x = %d, want 200", got)
						}
					}
					rt := tr.RefreshToken
					check := func(phase string, want [3]int) {
						t.Helper()
						awaitCode(t, phase+": old access token on /api/x", want[0], func() int { return e.bearerStatus("/api/x", tr.AccessToken) })
						if got := e.bearerStatus("/api/x", admin); got != want[2] {
							t.Errorf("%s: admin-tool token on /api/x = %d, want %d", phase, got, want[2])
						}
						code, next := e.refresh(rt)
						if code != want[1] {
							t.Errorf("%s: refresh of the old refresh token = %d, want %d", phase, code, want[1])
						}
						if code == 200 {
							rt = next.RefreshToken
						}
					}
					edit := tt.edit
					if !edit.validAfter.IsZero() {
						// "Now": the next second, as the field has whole
						// seconds and the tokens were minted in this one.
						edit.validAfter = time.Now().Add(time.Second)
					}
					e.edit(edit)
					check("after the edit", tt.afterEdit)
					e.edit(aliceEntry{})
					check("after the undo", tt.afterUndo)
					// A new login always works once the edit is undone, and
					// once a valid-after it set has passed: the not-before
					// record it left stays (records never go back), so a
					// token minted before that second is refused.
					if !edit.validAfter.IsZero() {
						time.Sleep(time.Until(edit.validAfter.Truncate(time.Second)) + 50*time.Millisecond)
					}
					fresh := e.login("alice", "alice-password-1")
					if got := e.bearerStatus("/admin/x", fresh.AccessToken); got != 200 {
						t.Errorf("new login after the undo: /admin/x = %d, want 200", got)
					}
				})
			}
			t.Run("promote: the new role arrives with the next refresh", func(t *testing.T) {
				e := lifeEnv(t, b, "", "", nil)
				tr := e.login("bob", "bob-password-1")
				if got := e.bearerStatus("/reports/q1", tr.AccessToken); got != 403 {
					t.Fatalf("bob on /reports/q1 = %d, want 403", got)
				}
				e.edit(aliceEntry{bobRoles: "[reader, user]"})
				awaitCode(t, "bob's refreshed token on /reports/q1", 200, func() int {
					code, next := e.refresh(tr.RefreshToken)
					if code != 200 {
						t.Fatalf("refresh = %d, want 200", code)
					}
					tr = next
					return e.bearerStatus("/reports/q1", tr.AccessToken)
				})
			})
			t.Run("demote: a refreshed token has the new roles", func(t *testing.T) {
				e := lifeEnv(t, b, "", "", nil)
				tr := e.login("alice", "alice-password-1")
				e.edit(aliceEntry{roles: "[user]"})
				awaitCode(t, "old access token on /admin/x", 401, func() int { return e.bearerStatus("/admin/x", tr.AccessToken) })
				code, next := e.refresh(tr.RefreshToken)
				if code != 200 {
					t.Fatalf("refresh after the demotion = %d, want 200", code)
				}
				if got := e.bearerStatus("/admin/x", next.AccessToken); got != 403 {
					t.Errorf("refreshed token on /admin/x = %d, want 403", got)
				}
				if got := e.bearerStatus("/api/x", next.AccessToken); got != 200 {
					t.Errorf("refreshed token on /api/x = %d, want 200", got)
				}
			})
		})
	}
}

// TestE2ELifecycleRestart disables alice on a running gateway, stops it,
// re-enables her while it is down, and starts it again on the same state:
// her old tokens stay refused.
func TestE2ELifecycleRestart(t *testing.T) {
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			usersFile := filepath.Join(t.TempDir(), "users.yaml")
			writeFile(t, usersFile, lifeUsers(t, aliceEntry{}))
			shared := fresh()
			first := lifeEnv(t, b, shared, usersFile, nil)
			tr := first.login("alice", "alice-password-1")
			first.edit(aliceEntry{deleted: true})
			awaitCode(t, "old access token", 401, func() int { return first.bearerStatus("/api/x", tr.AccessToken) })
			// A real stop: drain, then flush and close the state store.
			if err := first.gw.Stop(); err != nil {
				t.Fatalf("stopping the first gateway: %v", err)
			}
			writeFile(t, usersFile, lifeUsers(t, aliceEntry{}))
			second := lifeEnv(t, b, shared, usersFile, nil)
			if got := second.bearerStatus("/api/x", tr.AccessToken); got != 401 {
				t.Errorf("after the restart: old access token = %d, want 401", got)
			}
			if got := second.refreshCode(tr.RefreshToken); got != 400 {
				t.Errorf("after the restart: old refresh token = %d, want 400", got)
			}
			fresh := second.login("alice", "alice-password-1")
			if got := second.bearerStatus("/api/x", fresh.AccessToken); got != 200 {
				t.Errorf("after the restart: new login = %d, want 200", got)
			}
		})
	}
}

// TestE2ELifecycleReplicas runs two gateways on one Redis, each on its own
// copy of the users file. Replica A sees alice disabled and re-enabled;
// replica B's copy never changed (it missed the edit). B refuses her old
// tokens once it has read A's record, within a few reload intervals.
func TestE2ELifecycleReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs redis-server")
	}
	b := redisBackend(statetest.StartServer(t), "replicas")
	a := lifeEnv(t, b, "shared", "", nil)
	bb := lifeEnv(t, b, "shared", "", nil)
	tr := a.login("alice", "alice-password-1")
	if got := bb.bearerStatus("/api/x", tr.AccessToken); got != 200 {
		t.Fatalf("B before the edit = %d, want 200", got)
	}
	a.edit(aliceEntry{disabled: true})
	awaitCode(t, "A: old access token", 401, func() int { return a.bearerStatus("/api/x", tr.AccessToken) })
	a.edit(aliceEntry{})
	start := time.Now()
	awaitCode(t, "B: old access token", 401, func() int { return bb.bearerStatus("/api/x", tr.AccessToken) })
	t.Logf("replica B refused the old token %v after A's re-enable", time.Since(start))
	if got := bb.refreshCode(tr.RefreshToken); got != 400 {
		t.Errorf("B: old refresh token = %d, want 400", got)
	}
	fresh := bb.login("alice", "alice-password-1")
	for name, e := range map[string]*gwEnv{"A": a, "B": bb} {
		if got := e.bearerStatus("/api/x", fresh.AccessToken); got != 200 {
			t.Errorf("%s: new login's token = %d, want 200", name, got)
		}
	}
}

// TestE2ELifecycleStoreDownDuringEdit pauses Redis while alice is disabled
// and re-enabled: her tokens are refused with 503 until the disable is
// recorded (other users keep working), then her old tokens stay refused
// and a new login works.
func TestE2ELifecycleStoreDownDuringEdit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs redis-server")
	}
	srv := statetest.StartServer(t)
	e := lifeEnv(t, redisBackend(srv, "outage"), "", "", nil, func(c *config.Config) {
		c.Redis.Timeout = 200 * time.Millisecond
		c.Auth.StateTimeout = 300 * time.Millisecond
	})
	alice := e.login("alice", "alice-password-1")
	bob := e.login("bob", "bob-password-1")
	srv.Pause()
	e.edit(aliceEntry{disabled: true})
	awaitCode(t, "alice's old token while the disable cannot be recorded", 401, func() int { return e.bearerStatus("/api/x", alice.AccessToken) })
	e.edit(aliceEntry{})
	awaitCode(t, "alice's old token after the re-enable, store down", 503, func() int { return e.bearerStatus("/api/x", alice.AccessToken) })
	if got := e.bearerStatus("/api/x", bob.AccessToken); got != 200 {
		t.Errorf("bob's token with the store down = %d, want 200", got)
	}
	srv.Resume()
	awaitCode(t, "alice's old token once recorded", 401, func() int { return e.bearerStatus("/api/x", alice.AccessToken) })
	fresh := e.login("alice", "alice-password-1")
	if got := e.bearerStatus("/api/x", fresh.AccessToken); got != 200 {
		t.Errorf("new login after the store came back = %d, want 200", got)
	}
}

// TestE2ELogoutWhileDisabled logs out a disabled user: the answer is 200
// and the session really is revoked, so it stays dead when the user is
// enabled again.
func TestE2ELogoutWhileDisabled(t *testing.T) {
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := lifeEnv(t, b, "", "", nil)
			tr := e.login("bob", "bob-password-1")
			sid := unverified(t, tr.AccessToken).SessionID
			e.edit(aliceEntry{bobOff: true})
			awaitCode(t, "disabled bob's token", 401, func() int { return e.bearerStatus("/api/x", tr.AccessToken) })
			r := mustPost(t, e, "/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}, "Authorization", "Bearer "+tr.AccessToken)
			if r.status != 200 {
				t.Fatalf("logout while disabled = %d %s, want 200", r.status, r.body)
			}
			revoked, err := e.app.State().AccessRevoked(context.Background(), "any-other-token", sid)
			if err != nil || !revoked {
				t.Errorf("session revoked by the logout = %v, %v; want true", revoked, err)
			}
		})
	}
}

// TestE2ESessionMaxAge refreshes a session until its absolute age: each
// refresh slides the refresh token, none extends the login; the first
// refresh after jwt.refresh_max_age is refused with invalid_grant, and the
// last access token ends with the session.
func TestE2ESessionMaxAge(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 3s session")
	}
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := lifeEnv(t, b, "", "", nil, func(c *config.Config) {
				c.JWT.AccessTTL = 2 * time.Second
				c.JWT.RefreshTTL = 2 * time.Second
				c.JWT.RefreshMaxAge = 3 * time.Second
				c.JWT.Leeway = 0
			})
			tr, _ := e.loginAny("alice", "alice-password-1")
			// The session counts from the login's auth_time, not from
			// when the request was sent (bcrypt may take a while).
			login := unverified(t, tr.AccessToken).AuthTime.Time
			var last tokenResponse
			var lastOK time.Time
			refreshed := 0
			for {
				time.Sleep(400 * time.Millisecond)
				code, next := e.refresh(tr.RefreshToken)
				if code != 200 {
					if code != 400 || next.Error != "invalid_grant" {
						t.Fatalf("refresh = %d %q, want 400 invalid_grant", code, next.Error)
					}
					break
				}
				refreshed++
				tr, last, lastOK = next, next, time.Now()
				if time.Since(login) > 10*time.Second {
					t.Fatal("the session is still refreshed 10s after a login with a 3s max age")
				}
			}
			ended := time.Since(login)
			t.Logf("%d refreshes; refused %v after the login second", refreshed, ended)
			// Past the 2s refresh ttl of the login's token: rotation
			// slid the session, up to its max age.
			if lastOK.Sub(login) < 2*time.Second {
				t.Errorf("last successful refresh %v after login (%d refreshes); want one past the 2s refresh ttl", lastOK.Sub(login), refreshed)
			}
			if last.AccessToken == "" {
				t.Fatal("no refreshed access token")
			}
			if exp := unverified(t, last.AccessToken).ExpiresAt.Time; exp.After(login.Add(3 * time.Second)) {
				t.Errorf("last access token expires %v after login, want at most the 3s session", exp.Sub(login))
			}
			awaitCode(t, "the last access token after the session end", 401, func() int { return e.bearerStatus("/api/x", last.AccessToken) })
			if ended < 3*time.Second {
				t.Errorf("refresh refused %v after login, before the 3s max age", ended)
			}
		})
	}
}

// loginAny logs in without the 900s expires_in check of e.login.
func (e *gwEnv) loginAny(user, pass string) (tokenResponse, int) {
	e.t.Helper()
	r := mustPost(e.t, e, "/auth/login", loginForm(user, pass))
	if r.status != 200 {
		e.t.Fatalf("login %s = %d %s", user, r.status, r.body)
	}
	return r.token, r.status
}

// TestE2ESessionRevocation checks that access tokens are bound to their
// session (sid): with auth.access_revocation.enabled a logout or a detected
// refresh-token reuse ends every access token of the login — earlier ones,
// and a thief's — not just the one presented. Without it they live until
// they expire, as documented.
func TestE2ESessionRevocation(t *testing.T) {
	revocation := func(c *config.Config) { c.Auth.AccessRevocation.Enabled = true }
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Run("logout ends every access token of the session", func(t *testing.T) {
				e := lifeEnv(t, b, "", "", nil, revocation)
				first := e.login("alice", "alice-password-1")
				_, second := e.refresh(first.RefreshToken)
				other := e.login("alice", "alice-password-1") // another session
				r := mustPost(t, e, "/auth/logout", url.Values{"refresh_token": {second.RefreshToken}})
				if r.status != 200 {
					t.Fatalf("logout = %d %s", r.status, r.body)
				}
				for name, tok := range map[string]string{"first": first.AccessToken, "second": second.AccessToken} {
					if got := e.bearerStatus("/api/x", tok); got != 401 {
						t.Errorf("%s access token of the logged-out session = %d, want 401", name, got)
					}
				}
				if got := e.bearerStatus("/api/x", other.AccessToken); got != 200 {
					t.Errorf("access token of another session = %d, want 200", got)
				}
			})
			t.Run("reuse ends the thief's access token too", func(t *testing.T) {
				e := lifeEnv(t, b, "", "", nil, revocation)
				victim := e.login("alice", "alice-password-1")
				// The thief refreshes first with a stolen copy.
				code, thief := e.refresh(victim.RefreshToken)
				if code != 200 {
					t.Fatalf("thief's refresh = %d", code)
				}
				// The victim's client presents the same, now rotated token.
				if code := e.refreshCode(victim.RefreshToken); code != 400 {
					t.Fatalf("victim's refresh after the theft = %d, want 400 (reuse)", code)
				}
				for name, tok := range map[string]string{"thief's": thief.AccessToken, "victim's": victim.AccessToken} {
					if got := e.bearerStatus("/api/x", tok); got != 401 {
						t.Errorf("%s access token after reuse detection = %d, want 401", name, got)
					}
				}
				if code := e.refreshCode(thief.RefreshToken); code != 400 {
					t.Errorf("thief's refresh token after reuse detection = %d, want 400", code)
				}
			})
			t.Run("without access revocation, access tokens live until they expire", func(t *testing.T) {
				e := lifeEnv(t, b, "", "", nil)
				tr := e.login("alice", "alice-password-1")
				if r := mustPost(t, e, "/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}); r.status != 200 {
					t.Fatalf("logout = %d", r.status)
				}
				if got := e.bearerStatus("/api/x", tr.AccessToken); got != 200 {
					t.Errorf("access token after logout without access_revocation = %d, want 200 until it expires", got)
				}
			})
		})
	}
}

// wsEcho is a WebSocket echo upstream.
var wsEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
})

// openTunnel dials /ws through e with the header and checks the echo.
func openTunnel(t *testing.T, e *gwEnv, hdr ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.gw.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
		t.Fatalf("echo = %q %v", msg, err)
	}
	return c
}

// tunnelClosesWithin keeps c busy until it ends and returns how long that
// took, failing after limit.
func tunnelClosesWithin(t *testing.T, c *websocket.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
			break
		}
		if _, _, err := c.Read(ctx); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("tunnel still open %v after its credential ended", limit)
	}
	return time.Since(start)
}

// TestE2ETunnelLifetime opens a WebSocket tunnel through the gateway and
// ends its credential each way: it closes at the token's expiry, and within
// a few reload intervals of a disable, a demotion, a password change, a
// logout (with access revocation), an API key's removal or demotion.
func TestE2ETunnelLifetime(t *testing.T) {
	keysWithout := func(name string) string {
		var out []string
		for _, block := range strings.SplitAfter(testKeys(), "\n  - ") {
			if !strings.Contains(block, "name: "+name+"\n") {
				out = append(out, block)
			}
		}
		return strings.TrimSuffix(strings.Join(out, ""), "  - ")
	}
	tests := []struct {
		name  string
		opts  []envOption
		token bool // a JWT of alice, else the reader API key
		end   func(t *testing.T, e *gwEnv, tr tokenResponse)
		limit time.Duration
	}{
		{"access token expires", []envOption{func(c *config.Config) { c.JWT.AccessTTL = 2 * time.Second; c.JWT.Leeway = 0 }}, true,
			func(*testing.T, *gwEnv, tokenResponse) {}, 5 * time.Second},
		{"user disabled", nil, true, func(t *testing.T, e *gwEnv, _ tokenResponse) { e.edit(aliceEntry{disabled: true}) }, 3 * time.Second},
		{"user deleted", nil, true, func(t *testing.T, e *gwEnv, _ tokenResponse) { e.edit(aliceEntry{deleted: true}) }, 3 * time.Second},
		{"user demoted", nil, true, func(t *testing.T, e *gwEnv, _ tokenResponse) { e.edit(aliceEntry{roles: "[user]"}) }, 3 * time.Second},
		{"password changed", nil, true, func(t *testing.T, e *gwEnv, _ tokenResponse) {
			e.edit(aliceEntry{password: "alice-password-2"})
		}, 3 * time.Second},
		{"logout with access revocation", []envOption{func(c *config.Config) { c.Auth.AccessRevocation.Enabled = true }}, true,
			func(t *testing.T, e *gwEnv, tr tokenResponse) {
				if r := mustPost(t, e, "/auth/logout", url.Values{"refresh_token": {tr.RefreshToken}}); r.status != 200 {
					t.Fatalf("logout = %d", r.status)
				}
			}, 3 * time.Second},
		{"API key removed", nil, false, func(t *testing.T, e *gwEnv, _ tokenResponse) {
			writeFile(t, filepath.Join(e.dir, "keys.yaml"), keysWithout("reader-bot"))
		}, 3 * time.Second},
		{"API key demoted", nil, false, func(t *testing.T, e *gwEnv, _ tokenResponse) {
			writeFile(t, filepath.Join(e.dir, "keys.yaml"), strings.Replace(testKeys(), "roles: [reader]", "roles: [user]", 1))
		}, 3 * time.Second},
	}
	for _, b := range lifeBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if testing.Short() && tt.name == "access token expires" {
						t.Skip("waits out a 2s token")
					}
					e := lifeEnv(t, b, "", "", wsEcho, tt.opts...)
					var tr tokenResponse
					var c *websocket.Conn
					if tt.token {
						tr, _ = e.loginAny("alice", "alice-password-1")
						c = openTunnel(t, e, "Authorization", "Bearer "+tr.AccessToken)
					} else {
						c = openTunnel(t, e, "X-API-Key", testReaderKey)
					}
					time.Sleep(200 * time.Millisecond) // healthy rechecks keep it open
					tt.end(t, e, tr)
					took := tunnelClosesWithin(t, c, tt.limit)
					t.Logf("tunnel closed %v after the change", took)
					if n := e.logs.FilterMessage("tunnel closed").Len(); n != 1 {
						t.Errorf("%d 'tunnel closed' log lines, want 1", n)
					}
				})
			}
		})
	}
}
