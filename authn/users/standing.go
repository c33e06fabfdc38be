package users

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgate/authgate/authn/token"
)

// Ledger records per-user "not before" instants where every replica, and a
// gateway after a restart, finds them: the shared state store (embedded and
// persisted to auth.state_file, or Redis). Implementations are safe for
// concurrent use; state.Store is one.
type Ledger interface {
	// RaiseNotBefore raises each user's record to at least the given
	// instant (never lowering it) and keeps it at least keep past it.
	RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error
	// NotBefore returns the records of the given users; a user without
	// one is absent.
	NotBefore(ctx context.Context, usernames []string) (map[string]time.Time, error)
}

// TrackOptions configure Store.Track.
type TrackOptions struct {
	// Keep is how long a not-before record is kept past its instant: at
	// least the longest lifetime of any token the gateway mints, plus the
	// leeway, so that every token it refuses has expired before it goes.
	// Required.
	Keep time.Duration
	// Timeout bounds each ledger call; zero means DefaultLedgerTimeout.
	Timeout time.Duration
	// Interval is how often Run retries unrecorded changes and re-reads
	// the records other replicas wrote; zero means DefaultSyncInterval.
	Interval time.Duration
	// Now is the clock; nil means time.Now. It must be the clock that
	// stamps the tokens' iat.
	Now func() time.Time
	// OnError, if set, is told about ledger failures (for logs).
	OnError func(error)
}

// Defaults for TrackOptions.
const (
	DefaultLedgerTimeout = 500 * time.Millisecond
	DefaultSyncInterval  = time.Second
)

// Store holds the current Set and the standing of its users, and swaps
// both atomically on reload. It is safe for concurrent use. The zero value
// holds no users: every login fails and only tokens without a credential
// version (service tokens) pass CheckBinding.
//
// A Store keeps a not-before instant per user: tokens of the user issued
// before it are refused for good. On every Swap it compares the new users
// file with the previous one, and when it observes a user disabled,
// deleted or given a new password it raises that user's instant to the
// moment it observed the change; at the first Swap every disabled user
// counts as just disabled. A user's tokens_valid_after counts too. Once
// Track has attached a Ledger, each observation is recorded there, so that
// re-enabling the user, re-adding them with the same hash, or reverting the
// password later cannot revive old tokens, also after a restart and on a
// replica that did not observe the edit itself.
//
// The Store fails closed: a user whose observation could not be recorded,
// or who (re)appeared in the file while the ledger could not be read, is
// refused with ErrPending until Run (or the next Swap) reaches the ledger.
type Store struct {
	p atomic.Pointer[view]

	mu        sync.Mutex // serializes Swap, Track and sync; never held by CheckBinding
	ledger    Ledger
	opts      TrackOptions
	local     map[string]time.Time // known not-before instants, only ever raised
	unwritten map[string]time.Time // instants not yet recorded in the ledger
	unread    map[string]bool      // users whose record was not read since they appeared
	failing   bool                 // the last sync failed (OnError is told once per outage)
}

// view is one consistent snapshot for CheckBinding: a users file and the
// standing of its users. It is immutable.
type view struct {
	set       *Set
	notBefore map[string]time.Time // users of set with an instant
	pending   map[string]bool      // users of set refused until synced
}

// Load returns the current set, or nil.
func (st *Store) Load() *Set {
	if v := st.p.Load(); v != nil {
		return v.set
	}
	return nil
}

// Swap replaces the current set, raises the not-before instant of every
// user it sees disabled, deleted or with a new password, and records those
// in the ledger (see Store). A ledger failure does not stop the swap: the
// affected users are refused until Run records them.
func (st *Store) Swap(s *Set) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	var old *Set
	if v := st.p.Load(); v != nil {
		old = v.set
	}
	now := st.now()
	// Instants are whole seconds, like iat. The observation is rounded up:
	// a token minted earlier in the same second has the same iat as one
	// minted after the change, and must be refused.
	at := now.Truncate(time.Second).Add(time.Second)
	observe := func(name string) {
		st.raise(name, at)
		st.unwritten[name] = later(st.unwritten[name], at)
	}
	if old == nil {
		for _, name := range s.Usernames() {
			if u, _ := s.Lookup(name); u.Disabled {
				observe(name)
			}
		}
	} else {
		for _, name := range old.Usernames() {
			was, _ := old.Lookup(name)
			u, ok := s.Lookup(name)
			switch {
			case !ok, u.Disabled && !was.Disabled, u.ver != was.ver:
				observe(name)
			}
		}
	}
	for _, name := range s.Usernames() {
		u, _ := s.Lookup(name)
		if !u.TokensValidAfter.IsZero() {
			// The file's instant is recorded too, so that deleting the
			// field does not revive tokens; never past now, so that a
			// mistyped future instant does not outlive its correction.
			rec := u.TokensValidAfter
			if rec.After(now) {
				rec = now
			}
			if rec.After(st.local[name]) {
				st.raise(name, rec)
				st.unwritten[name] = later(st.unwritten[name], rec)
			}
		}
		if old == nil || !old.has(name) {
			st.unread[name] = true
		}
	}
	st.publish(s)
	st.syncLocked(context.Background(), false)
}

// Track attaches the ledger that records the not-before instants, with its
// options, and synchronizes at once: it records what earlier swaps observed
// and reads the records of every current user. It returns the ledger's
// error, if any; the users it concerns stay refused until Run succeeds.
// Track is called once, before Run.
func (st *Store) Track(l Ledger, o TrackOptions) error {
	if l == nil {
		return errors.New("users: track: ledger is required")
	}
	if o.Keep <= 0 {
		return fmt.Errorf("users: track: keep must be positive, got %s", o.Keep)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultLedgerTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSyncInterval
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	st.ledger, st.opts = l, o
	s := st.Load()
	for _, name := range s.Usernames() {
		st.unread[name] = true
	}
	st.publish(s)
	return st.syncLocked(context.Background(), false)
}

// Run retries unrecorded observations and re-reads every user's record
// each interval until ctx ends, so a user refused while the store was down
// is admitted again once it answers, and an instant another replica
// recorded (for an edit this one never saw) applies here too. Without a
// ledger it returns at once.
func (st *Store) Run(ctx context.Context) {
	st.mu.Lock()
	l, interval := st.ledger, st.opts.Interval
	st.mu.Unlock()
	if l == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st.mu.Lock()
			st.syncLocked(ctx, true)
			st.mu.Unlock()
		}
	}
}

// ValidFrom returns the user's not-before instant: tokens issued before it
// are refused. It is zero when there is none. The issuer waits for it
// before minting, so that a token is never dead when it is handed out.
func (st *Store) ValidFrom(username string) time.Time {
	v := st.p.Load()
	if v == nil {
		return time.Time{}
	}
	return v.notBefore[Normalize(username)]
}

// init makes the maps. st.mu must be held.
func (st *Store) init() {
	if st.local == nil {
		st.local = map[string]time.Time{}
		st.unwritten = map[string]time.Time{}
		st.unread = map[string]bool{}
	}
}

func (st *Store) now() time.Time {
	if st.opts.Now != nil {
		return st.opts.Now()
	}
	return time.Now()
}

// raise raises the known instant of name to at. st.mu must be held.
func (st *Store) raise(name string, at time.Time) {
	st.local[name] = later(st.local[name], at)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// syncLocked records the unwritten instants and reads the records of the
// unread users (of every user with all), then publishes a new view. It
// returns the first ledger error. st.mu must be held.
func (st *Store) syncLocked(ctx context.Context, all bool) error {
	if st.ledger == nil {
		return nil
	}
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	if len(st.unwritten) > 0 {
		cctx, cancel := context.WithTimeout(ctx, st.opts.Timeout)
		err := st.ledger.RaiseNotBefore(cctx, st.unwritten, st.opts.Keep)
		cancel()
		if err != nil {
			fail(fmt.Errorf("users: record not-before instants: %w", err))
		} else {
			clear(st.unwritten)
		}
	}
	s := st.Load()
	var names []string
	if all {
		names = slices.Clone(s.Usernames())
	} else {
		for _, name := range s.Usernames() {
			if st.unread[name] {
				names = append(names, name)
			}
		}
	}
	if len(names) > 0 {
		cctx, cancel := context.WithTimeout(ctx, st.opts.Timeout)
		recs, err := st.ledger.NotBefore(cctx, names)
		cancel()
		if err != nil {
			fail(fmt.Errorf("users: read not-before instants: %w", err))
		} else {
			for name, at := range recs {
				st.raise(name, at)
			}
			for _, name := range names {
				delete(st.unread, name)
			}
		}
	}
	st.forget()
	st.publish(s)
	if firstErr != nil && !st.failing && st.opts.OnError != nil {
		// Once per outage: a store that stays down is retried every
		// interval, and one log line says so.
		st.opts.OnError(firstErr)
	}
	st.failing = firstErr != nil
	return firstErr
}

// forget drops known instants whose every token has expired, so that the
// map does not grow with users deleted long ago. st.mu must be held.
func (st *Store) forget() {
	if st.opts.Keep <= 0 {
		return
	}
	cutoff := st.now().Add(-st.opts.Keep)
	for name, at := range st.local {
		if at.Before(cutoff) {
			if _, unwritten := st.unwritten[name]; !unwritten {
				delete(st.local, name)
			}
		}
	}
}

// publish stores a new view of s with the current standing. st.mu must be
// held.
func (st *Store) publish(s *Set) {
	v := &view{set: s, notBefore: map[string]time.Time{}, pending: map[string]bool{}}
	for _, name := range s.Usernames() {
		u, _ := s.Lookup(name)
		if at := later(st.local[name], u.TokensValidAfter); !at.IsZero() {
			v.notBefore[name] = at
		}
		if st.ledger != nil {
			_, unwritten := st.unwritten[name]
			if unwritten || st.unread[name] {
				v.pending[name] = true
			}
		}
	}
	st.p.Store(v)
}

// has reports whether s has a user of the normalized name.
func (s *Set) has(name string) bool {
	_, ok := s.Lookup(name)
	return ok
}

var _ token.Binding = (*Store)(nil)

// CheckBinding implements token.Binding. A token minted for a user carries
// the user's Ver and is accepted only while the user exists, is enabled,
// has the same password hash, holds every role the token carries (a role
// removed from the user ends the tokens that carry it; an added role needs
// nothing), and only if it was issued at or after the user's not-before
// instant. A token with an empty ver was minted for a service name by the
// admin tool and is accepted only while no user of that name exists, so a
// service token can never act as a user.
func (st *Store) CheckBinding(_ context.Context, c *token.Claims) error {
	// One snapshot: the file and the standing of its users always match,
	// so a re-added user is never seen without their instant.
	v := st.p.Load()
	if v == nil {
		v = &view{}
	}
	u, ok := v.set.Lookup(c.Subject)
	if c.Ver == "" {
		if ok {
			return fmt.Errorf("%w: %q", ErrNotService, u.Username)
		}
		return nil
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrUnknownUser, Normalize(c.Subject))
	case u.Disabled:
		return fmt.Errorf("%w: %q", ErrDisabled, u.Username)
	case subtle.ConstantTimeCompare([]byte(c.Ver), []byte(u.ver)) != 1:
		return fmt.Errorf("%w: %q", ErrStale, u.Username)
	case v.pending[u.Username]:
		return fmt.Errorf("%w: %q", ErrPending, u.Username)
	case c.IssuedAt == nil:
		// Every token the gateway mints has an iat; one without cannot
		// be placed before or after a revocation.
		return fmt.Errorf("%w: %q: token without iat", ErrRevoked, u.Username)
	}
	if nb, ok := v.notBefore[u.Username]; ok && c.IssuedAt.Time.Before(nb) {
		return fmt.Errorf("%w: %q", ErrRevoked, u.Username)
	}
	if !subset(c.Roles, u.Roles) {
		return fmt.Errorf("%w: %q", ErrRoleRemoved, u.Username)
	}
	return nil
}

// subset reports whether every role of a is in b; both are sorted and
// without duplicates (token.NormalizeRoles).
func subset(a, b []string) bool {
	i := 0
	for _, r := range a {
		for i < len(b) && b[i] < r {
			i++
		}
		if i == len(b) || b[i] != r {
			return false
		}
		i++
	}
	return true
}
