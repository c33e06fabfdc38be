package users

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/authn/state/statetest"
	"github.com/authgate/authgate/authn/token"
)

const keep = 48 * time.Hour

// ledger is a state.Memory whose calls can be made to fail like a store
// outage.
type ledger struct {
	*state.Memory
	failWrites, failReads atomic.Bool
	mu                    sync.Mutex
	writes                []map[string]time.Time
}

func (l *ledger) RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error {
	if l.failWrites.Load() {
		return state.ErrUnavailable
	}
	l.mu.Lock()
	cp := map[string]time.Time{}
	for k, v := range at {
		cp[k] = v
	}
	l.writes = append(l.writes, cp)
	l.mu.Unlock()
	return l.Memory.RaiseNotBefore(ctx, at, keep)
}

func (l *ledger) NotBefore(ctx context.Context, names []string) (map[string]time.Time, error) {
	if l.failReads.Load() {
		return nil, state.ErrUnavailable
	}
	return l.Memory.NotBefore(ctx, names)
}

func newLedger(t *testing.T, clk *statetest.Clock, path string) *ledger {
	t.Helper()
	m, err := state.NewMemory(state.MemoryOptions{Now: clk.Now, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return &ledger{Memory: m}
}

// usersFile renders a users file: alice (admin, user) with hash, bob.
// Options edit alice's entry.
func usersFile(aliceHash string, opts ...string) string {
	alice := "  - username: alice\n    password_hash: \"" + aliceHash + "\"\n    roles: [admin, user]\n"
	for _, o := range opts {
		switch {
		case o == "disabled":
			alice += "    disabled: true\n"
		case o == "deleted":
			alice = ""
		case strings.HasPrefix(o, "roles:"):
			alice = strings.Replace(alice, "roles: [admin, user]", o, 1)
		default:
			alice += "    " + o + "\n"
		}
	}
	return "users:\n" + alice + "  - username: bob\n    password_hash: \"" + hashBob + "\"\n    roles: [user]\n"
}

// tracked is a Store on a ledger with a settable clock.
type tracked struct {
	t   *testing.T
	st  *Store
	clk *statetest.Clock
	l   *ledger
}

func newTracked(t *testing.T, clk *statetest.Clock, l *ledger, file string) *tracked {
	t.Helper()
	tr := &tracked{t: t, st: &Store{}, clk: clk, l: l}
	tr.swap(file)
	if err := tr.st.Track(l, TrackOptions{Keep: keep, Now: clk.Now, Interval: 10 * time.Millisecond}); err != nil && !l.failWrites.Load() && !l.failReads.Load() {
		t.Fatalf("Track() error = %v", err)
	}
	return tr
}

func (tr *tracked) swap(file string) {
	tr.t.Helper()
	tr.st.Swap(mustParse(tr.t, file))
}

// token returns the claims of a token for alice minted now with her
// current ver and the given roles.
func (tr *tracked) token(roles ...string) *token.Claims {
	tr.t.Helper()
	u, ok := tr.st.Load().Lookup("alice")
	if !ok {
		tr.t.Fatal("alice is not in the users file")
	}
	if roles == nil {
		roles = u.Roles
	}
	return claims("alice", u.Ver(), tr.clk.Now(), roles...)
}

// check is CheckBinding of c.
func (tr *tracked) check(c *token.Claims) error {
	return tr.st.CheckBinding(context.Background(), c)
}

// expect checks that CheckBinding of c is want (nil: accepted).
func (tr *tracked) expect(what string, c *token.Claims, want error) {
	tr.t.Helper()
	if err := tr.check(c); !is(err, want) {
		tr.t.Errorf("%s = %v, want %v", what, err, want)
	}
}

func is(err, want error) bool {
	return (want == nil) == (err == nil) && (want == nil || errors.Is(err, want))
}

// TestStandingTransitions walks alice through every edit of the users file
// with a token minted before it, and checks the token after the edit and
// after the edit is undone: disable, delete and password change end it for
// good; a role removal ends it while the role is missing; a promotion
// changes nothing. A token minted after the undo works.
func TestStandingTransitions(t *testing.T) {
	tests := []struct {
		name       string
		edit, undo string
		roles      []string // the old token's roles; nil = all of alice's
		afterEdit  error
		afterUndo  error
	}{
		{"disable, re-enable", usersFile(hashAlice, "disabled"), usersFile(hashAlice), nil, ErrDisabled, ErrRevoked},
		{"delete, re-add with the same hash", usersFile(hashAlice, "deleted"), usersFile(hashAlice), nil, ErrUnknownUser, ErrRevoked},
		{"password change, revert", usersFile(hashAliceNew), usersFile(hashAlice), nil, ErrStale, ErrRevoked},
		{"demote, restore the role", usersFile(hashAlice, "roles: [user]"), usersFile(hashAlice), nil, ErrRoleRemoved, nil},
		{"demote, token without the role", usersFile(hashAlice, "roles: [user]"), usersFile(hashAlice), []string{"user"}, nil, nil},
		{"promote, demote back", usersFile(hashAlice, "roles: [admin, auditor, user]"), usersFile(hashAlice), nil, nil, nil},
		{"unrelated edit", usersFile(hashAlice) + "  - username: carol\n    password_hash: \"" + hashBob + "\"\n", usersFile(hashAlice), nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
			tr := newTracked(t, clk, newLedger(t, clk, ""), usersFile(hashAlice))
			old := tr.token(tt.roles...)
			if err := tr.check(old); err != nil {
				t.Fatalf("CheckBinding(fresh token) = %v", err)
			}
			clk.Advance(10 * time.Second)
			tr.swap(tt.edit)
			if err := tr.check(old); !is(err, tt.afterEdit) {
				t.Errorf("after the edit: CheckBinding(old token) = %v, want %v", err, tt.afterEdit)
			}
			clk.Advance(10 * time.Second)
			tr.swap(tt.undo)
			if err := tr.check(old); !is(err, tt.afterUndo) {
				t.Errorf("after the undo: CheckBinding(old token) = %v, want %v", err, tt.afterUndo)
			}
			// A token minted once the undo's own instant has passed (the
			// issuer waits for ValidFrom) works.
			if vf := tr.st.ValidFrom("alice"); vf.After(clk.Now()) {
				clk.Set(vf)
			}
			tr.expect("after the undo: CheckBinding(new token)", tr.token(), nil)
		})
	}
}

// TestStandingSameSecond checks the rounding: a token minted in the same
// second as the observed disable, before it, is refused after a re-enable.
func TestStandingSameSecond(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 700e6, time.UTC))
	tr := newTracked(t, clk, newLedger(t, clk, ""), usersFile(hashAlice))
	old := tr.token() // iat 09:00:00
	tr.swap(usersFile(hashAlice, "disabled"))
	tr.swap(usersFile(hashAlice))
	tr.expect("CheckBinding(token of the same second)", old, ErrRevoked)
	if got, want := tr.st.ValidFrom("Alice"), time.Date(2026, 5, 1, 9, 0, 1, 0, time.UTC); !got.Equal(want) {
		t.Errorf("ValidFrom(alice) = %v, want %v", got, want)
	}
}

// TestStandingSurvivesRestart checks that a disable observed before a
// restart still refuses old tokens after it, when the user was re-enabled
// while the gateway was down, with the embedded store persisted to a file.
func TestStandingSurvivesRestart(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "state.json")
	l1 := newLedger(t, clk, path)
	tr := newTracked(t, clk, l1, usersFile(hashAlice))
	old := tr.token()
	clk.Advance(time.Minute)
	tr.swap(usersFile(hashAlice, "deleted"))
	_ = l1.Close()

	clk.Advance(time.Minute)
	// Restarted with alice back in the file.
	tr2 := newTracked(t, clk, newLedger(t, clk, path), usersFile(hashAlice))
	tr2.expect("after the restart: CheckBinding(token from before the delete)", old, ErrRevoked)
	tr2.expect("after the restart: CheckBinding(new token)", tr2.token(), nil)
}

// TestStandingStartupCountsDisabledAsJustDisabled checks that a gateway
// starting with a disabled user records the disable, so a re-enable later
// cannot revive tokens minted before the start, even without a state file.
func TestStandingStartupCountsDisabledAsJustDisabled(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	before := &tracked{t: t, st: &Store{}, clk: clk}
	before.swap(usersFile(hashAlice))
	old := before.token()
	clk.Advance(time.Minute)
	l := newLedger(t, clk, "")
	tr := newTracked(t, clk, l, usersFile(hashAlice, "disabled"))
	if recs, _ := l.NotBefore(context.Background(), []string{"alice"}); recs["alice"].IsZero() {
		t.Error("no not-before record for the user disabled at startup")
	}
	clk.Advance(time.Minute)
	tr.swap(usersFile(hashAlice))
	tr.expect("CheckBinding(token from before the start) after re-enable", old, ErrRevoked)
}

// TestStandingAcrossReplicas runs two Stores on one ledger: replica A sees
// alice disabled and re-enabled, replica B polled the file only before and
// after (it missed the disable). B refuses the old token once it has read
// A's record.
func TestStandingAcrossReplicas(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	l := newLedger(t, clk, "")
	a := newTracked(t, clk, l, usersFile(hashAlice))
	b := newTracked(t, clk, l, usersFile(hashAlice))
	old := a.token()
	clk.Advance(time.Minute)
	a.swap(usersFile(hashAlice, "disabled"))
	clk.Advance(time.Second)
	a.swap(usersFile(hashAlice))
	a.expect("replica A: CheckBinding(old token)", old, ErrRevoked)
	run(t, b.st)
	waitUntil(t, func() bool { return errors.Is(b.check(old), ErrRevoked) }, "replica B refuses the old token")
	b.expect("replica B: CheckBinding(new token)", b.token(), nil)
}

// TestStandingMissedToggle documents the limit of observation: a disable
// undone between two polls of every replica is never seen. The users
// file's tokens_valid_after covers it, and stays in force after it is
// removed from the file again.
func TestStandingMissedToggle(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	tr := newTracked(t, clk, newLedger(t, clk, ""), usersFile(hashAlice))
	old := tr.token()
	clk.Advance(time.Hour)
	tr.swap(usersFile(hashAlice)) // the disable came and went unseen
	if err := tr.check(old); err != nil {
		t.Fatalf("CheckBinding(old token) after an unseen toggle = %v; the limitation is documented as nil", err)
	}
	cut := clk.Now().Add(-time.Minute).Format(time.RFC3339)
	tr.swap(usersFile(hashAlice, "tokens_valid_after: "+cut))
	tr.expect("with tokens_valid_after: CheckBinding(old token)", old, ErrRevoked)
	tr.expect("with tokens_valid_after: CheckBinding(new token)", tr.token(), nil)
	clk.Advance(time.Second)
	tr.swap(usersFile(hashAlice))
	tr.expect("after removing tokens_valid_after: CheckBinding(old token)", old, ErrRevoked)
}

// TestStandingFutureValidAfter checks that a tokens_valid_after in the
// future refuses every token until then while it is in the file, and does
// not outlive its correction.
func TestStandingFutureValidAfter(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	tr := newTracked(t, clk, newLedger(t, clk, ""), usersFile(hashAlice))
	future := clk.Now().Add(24 * time.Hour)
	tr.swap(usersFile(hashAlice, "tokens_valid_after: "+future.Format(time.RFC3339)))
	clk.Advance(time.Second)
	tr.expect("CheckBinding(token before a future tokens_valid_after)", tr.token(), ErrRevoked)
	if got := tr.st.ValidFrom("alice"); !got.Equal(future) {
		t.Errorf("ValidFrom(alice) = %v, want %v", got, future)
	}
	clk.Advance(time.Second)
	tr.swap(usersFile(hashAlice))
	tr.expect("after the correction: CheckBinding(new token)", tr.token(), nil)
}

// TestStandingFailsClosed makes the ledger fail when an edit is observed:
// the user is refused (ErrPending, an ErrUnavailable) until it is recorded,
// so a re-enable during the outage cannot revive old tokens, and a restart
// could not have lost the record. Other users are unaffected.
func TestStandingFailsClosed(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	l := newLedger(t, clk, "")
	tr := newTracked(t, clk, l, usersFile(hashAlice))
	old := tr.token()
	bob, _ := tr.st.Load().Lookup("bob")
	bobToken := claims("bob", bob.Ver(), clk.Now(), "user")
	clk.Advance(time.Minute)

	l.failWrites.Store(true)
	tr.swap(usersFile(hashAlice, "disabled"))
	clk.Advance(time.Second)
	tr.swap(usersFile(hashAlice))
	for name, c := range map[string]*token.Claims{"old": old, "new": tr.token()} {
		err := tr.check(c)
		if !errors.Is(err, ErrPending) || !errors.Is(err, authn.ErrUnavailable) {
			t.Errorf("store down: CheckBinding(%s token) = %v, want ErrPending (ErrUnavailable)", name, err)
		}
	}
	if err := tr.st.CheckBinding(context.Background(), bobToken); err != nil {
		t.Errorf("store down: CheckBinding(bob) = %v, want nil: only the edited user waits", err)
	}

	l.failWrites.Store(false)
	run(t, tr.st)
	waitUntil(t, func() bool { return !errors.Is(tr.check(old), ErrPending) }, "the record to be written")
	tr.expect("store back: CheckBinding(old token)", old, ErrRevoked)
	tr.expect("store back: CheckBinding(new token)", tr.token(), nil)
}

// TestStandingReaddedWhileStoreDown re-adds a user this replica never saw
// deleted while the ledger cannot be read: the user waits until their
// record is read, and the record another replica wrote then applies.
func TestStandingReaddedWhileStoreDown(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	l := newLedger(t, clk, "")
	a := newTracked(t, clk, l, usersFile(hashAlice))
	old := a.token()
	clk.Advance(time.Minute)
	a.swap(usersFile(hashAlice, "deleted"))
	// B starts after the delete and sees alice come back while the store
	// cannot be read.
	b := newTracked(t, clk, l, usersFile(hashAlice, "deleted"))
	l.failReads.Store(true)
	clk.Advance(time.Minute)
	b.swap(usersFile(hashAlice))
	b.expect("store down: CheckBinding(old token) on B", old, ErrPending)
	l.failReads.Store(false)
	b.swap(usersFile(hashAlice) + "  - username: carol\n    password_hash: \"" + hashBob + "\"\n")
	b.expect("store back: CheckBinding(old token) on B", old, ErrRevoked)
}

// TestTrackReportsLedgerFailure checks that Track returns the ledger's
// error and refuses the users it could not read.
func TestTrackReportsLedgerFailure(t *testing.T) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	l := newLedger(t, clk, "")
	l.failReads.Store(true)
	st := &Store{}
	st.Swap(mustParse(t, usersFile(hashAlice)))
	if err := st.Track(l, TrackOptions{Keep: keep, Now: clk.Now}); !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("Track() = %v, want ErrUnavailable", err)
	}
	u, _ := st.Load().Lookup("alice")
	if err := st.CheckBinding(context.Background(), claims("alice", u.Ver(), clk.Now(), "user")); !errors.Is(err, ErrPending) {
		t.Errorf("CheckBinding() after a failed Track = %v, want ErrPending", err)
	}
	for _, o := range []TrackOptions{{}, {Keep: -time.Second}} {
		if err := (&Store{}).Track(l, o); err == nil {
			t.Errorf("Track(%+v) = nil, want an error", o)
		}
	}
	if err := (&Store{}).Track(nil, TrackOptions{Keep: keep}); err == nil {
		t.Error("Track(nil ledger) = nil, want an error")
	}
}

func TestParseTokensValidAfter(t *testing.T) {
	s := mustParse(t, usersFile(hashAlice, "tokens_valid_after: 2026-04-01T10:00:00Z"))
	u, _ := s.Lookup("alice")
	if want := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC); !u.TokensValidAfter.Equal(want) {
		t.Errorf("TokensValidAfter = %v, want %v", u.TokensValidAfter, want)
	}
	_, err := Parse("users.yaml", []byte(usersFile(hashAlice, "tokens_valid_after: yesterday")))
	if err == nil || !strings.Contains(err.Error(), "users.yaml:2: user 1 (alice): field tokens_valid_after: want an RFC 3339 time") {
		t.Errorf("Parse(bad tokens_valid_after) error = %v, want it named with file and line", err)
	}
}

// run runs st.Run until the test ends.
func run(t *testing.T, st *Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkCheckBinding is the per-request cost of the binding check of a
// gateway token whose user has a not-before record.
func BenchmarkCheckBinding(b *testing.B) {
	clk := statetest.NewClock(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	st := &Store{}
	st.Swap(mustParse(b, usersFile(hashAlice)))
	st.Swap(mustParse(b, usersFile(hashAlice, "tokens_valid_after: 2026-04-01T00:00:00Z")))
	u, _ := st.Load().Lookup("alice")
	c := claims("alice", u.Ver(), clk.Now(), "admin", "user")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := st.CheckBinding(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}
