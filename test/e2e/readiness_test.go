package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/internal/config"
)

// TestReadinessFollowsTheRevocationList: with the access-token revocation
// check failing closed, a down state store makes every request with a
// token 503, so /readyz says not ready and the pod leaves the endpoints.
// Failing open (or without the check) the pod still serves those requests
// and stays ready, reporting the store as down. When Redis returns,
// readiness and logins come back within a few probe intervals.
func TestReadinessFollowsTheRevocationList(t *testing.T) {
	srv := statetest.StartServer(t)
	usersFile := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, usersFile, replicaUsers(t, "alice"))
	revocation := func(enabled, failOpen bool) envOption {
		return func(c *config.Config) {
			c.Redis.Timeout = 200 * time.Millisecond
			c.Auth.StateTimeout = 300 * time.Millisecond
			c.Auth.AccessRevocation = config.RevocationConfig{Enabled: enabled, FailOpen: failOpen}
		}
	}
	closed := newReplicas(t, 1, srv.URL(3), "ready:", usersFile, revocation(true, false))[0]
	open := newReplicas(t, 1, srv.URL(3), "ready:", usersFile, revocation(true, true))[0]
	plain := newReplicas(t, 1, srv.URL(3), "ready:", usersFile, revocation(false, false))[0]
	cases := []struct {
		name        string
		e           *gwEnv
		downCode    int
		downStatus  string
		tokenStatus int // a valid access token while Redis is down
	}{
		{"revocation fails closed", closed, http.StatusServiceUnavailable, `"status":"not ready"`, http.StatusServiceUnavailable},
		{"revocation fails open", open, http.StatusOK, `"status":"ready"`, http.StatusOK},
		{"no revocation check", plain, http.StatusOK, `"status":"ready"`, http.StatusOK},
	}
	tr := closed.login("alice", replicaPassword)
	for _, tc := range cases {
		if code, body := adminGet(t, tc.e, "/readyz"); code != http.StatusOK || !strings.Contains(body, `"state_store":"up"`) {
			t.Fatalf("%s: /readyz before the outage = %d %s, want 200, state_store up", tc.name, code, body)
		}
	}

	srv.Stop()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reportTo(t, tc.e)
			if got := tc.e.bearerStatus("/api/x", tr.AccessToken); got != tc.tokenStatus {
				t.Errorf("valid access token with Redis down = %d, want %d", got, tc.tokenStatus)
			}
			code, body := adminGet(t, tc.e, "/readyz")
			if code != tc.downCode || !strings.Contains(body, tc.downStatus) || !strings.Contains(body, `"state_store":"down"`) {
				t.Errorf("/readyz with Redis down = %d %s, want %d with %s and state_store down", code, strings.TrimSpace(body), tc.downCode, tc.downStatus)
			}
		})
	}
	// Enough failed calls for the Redis client's dial breaker to open.
	for range 40 {
		adminGet(t, closed, "/readyz")
		postForm(closed, "/auth/login", loginForm("alice", replicaPassword))
	}
	time.Sleep(100 * time.Millisecond)

	srv.Restart() // returns once Redis answers
	back := time.Now()
	// A failed login is refused before any bcrypt work, so attempts are
	// quick until the store answers; the recovery time is when the first
	// successful login started.
	var started time.Time
	failed := 0
	for {
		started = time.Now()
		r, err := postForm(closed, "/auth/login", loginForm("alice", replicaPassword))
		if err == nil && r.status == http.StatusOK {
			break
		}
		failed++
		if time.Since(back) > 10*time.Second {
			t.Fatalf("login not back 10s after Redis returned: %+v %v", r, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	loginBack := started.Sub(back)
	for {
		if code, _ := adminGet(t, closed, "/readyz"); code == http.StatusOK {
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatal("/readyz not back 10s after Redis returned")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("after redis-server restarted: first successful login started %v after Redis answered (%d refused before it)",
		loginBack.Round(time.Microsecond), failed)
	// go-redis alone takes up to a second; slack for a loaded machine.
	if loginBack > 500*time.Millisecond {
		t.Errorf("logins came back %v after Redis, want well under a second", loginBack)
	}
}
