package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxKeys is the number of limiter entries a Memory keeps per kind
// when MemoryOptions.MaxKeys is zero.
const DefaultMaxKeys = 100000

// sweepInterval is how often, by the injected clock, Memory drops expired
// families and revocations. Between sweeps expired entries are already
// ignored; the sweep only returns their memory.
const sweepInterval = time.Minute

// flushDelay bounds how long a non-revoking change (a new family, a
// rotation) waits before it is written to the state file.
const flushDelay = 500 * time.Millisecond

// MemoryOptions configures NewMemory. The zero value is usable: the real
// clock, DefaultMaxKeys buckets and no state file.
type MemoryOptions struct {
	// Now is the clock. If nil, time.Now is used.
	Now func() time.Time
	// MaxKeys bounds the number of limiter entries of each kind: each Allow
	// scope, (account, client) pairs, accounts, and names that are not
	// accounts. If zero, DefaultMaxKeys.
	MaxKeys int
	// Path, if set, is the file families and revocations persist to, so that
	// a revoked token stays revoked across a restart.
	Path string
}

// Memory is the embedded Store for a single replica. Create it with
// NewMemory; the zero value is not usable. It is safe for concurrent use.
//
// Limiter entries live in bounded maps, one per kind, so that no kind can
// evict another's (see table); families and revocations in maps whose
// expired entries are swept lazily. Memory is bounded by MaxKeys per kind
// and by the number of live tokens. Operations never wait on anything but
// the state file, so their ctx is not consulted.
type Memory struct {
	now  func() time.Time
	path string
	lim  *limiter

	mu        sync.Mutex
	closed    bool
	families  map[string]*family
	revoked   map[string]time.Time
	notBefore map[string]notBefore
	sessions  map[string]*Session            // by key (the cookie's digest)
	bySubject map[string]map[string]struct{} // session keys by SubjectKey
	once      map[string]onceRecord          // PutOnce records
	lastSweep time.Time
	dirty     bool        // state differs from the file
	timer     *time.Timer // pending debounced flush, or nil
	flushErr  error       // last state-file write failure, reported by Ping

	writeMu sync.Mutex // serializes snapshot+write so writes land in order
}

// family is one refresh-token family.
type family struct {
	current string
	exp     time.Time
	revoked bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an embedded Store. If o.Path names an existing file its
// state is loaded; a file that cannot be read or parsed is an error naming the
// file (fail closed: starting empty would forget revocations).
func NewMemory(o MemoryOptions) (*Memory, error) {
	if o.MaxKeys < 0 {
		return nil, fmt.Errorf("state: max keys must not be negative, got %d", o.MaxKeys)
	}
	m := &Memory{
		now:      o.Now,
		path:     o.Path,
		families: make(map[string]*family),
		revoked:  make(map[string]time.Time),
	}
	if m.now == nil {
		m.now = time.Now
	}
	maxKeys := o.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	m.lim = newLimiter(m.now, maxKeys)
	m.lastSweep = m.now()
	if m.path != "" {
		if err := m.load(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// StartFamily implements Store. Starting a family id that already exists is
// an error, so that a collision can never revive a revoked family.
func (m *Memory) StartFamily(ctx context.Context, fam, jti string, exp time.Time) error {
	if fam == "" || jti == "" {
		return errors.New("state: start family: empty id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("start family", errClosed)
	}
	now := m.now()
	m.maybeSweep(now)
	if f, ok := m.families[fam]; ok && f.exp.After(now) {
		return fmt.Errorf("state: start family %q: already exists", fam)
	}
	m.families[fam] = &family{current: jti, exp: exp}
	m.changed()
	return nil
}

// Rotate implements Store.
func (m *Memory) Rotate(ctx context.Context, fam, oldJTI, newJTI string, exp time.Time) error {
	if fam == "" || oldJTI == "" || newJTI == "" {
		return errors.New("state: rotate: empty id")
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return unavailable("rotate", errClosed)
	}
	now := m.now()
	m.maybeSweep(now)
	f, ok := m.families[fam]
	switch {
	case !ok || !f.exp.After(now) || f.revoked:
		m.mu.Unlock()
		return ErrRevoked
	case f.current != oldJTI:
		// Refresh-token replay: the presented token was already rotated, so
		// either the legitimate client or a thief holds a copy. Revoke the
		// whole family (OAuth 2.0 Security BCP, refresh token rotation).
		f.revoked = true
		m.mu.Unlock()
		if err := m.persistNow(); err != nil {
			// The family is revoked in memory regardless; the failure
			// is only that the revocation may not survive a restart.
			return errors.Join(ErrReuse, err)
		}
		return ErrReuse
	}
	f.current = newJTI
	f.exp = exp
	m.changed()
	m.mu.Unlock()
	return nil
}

// RevokeFamily implements Store. A revocation is never shortened: the family
// stays revoked until the later of its expiry and exp.
func (m *Memory) RevokeFamily(ctx context.Context, fam string, exp time.Time) error {
	if fam == "" {
		return errors.New("state: revoke family: empty id")
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return unavailable("revoke family", errClosed)
	}
	m.maybeSweep(m.now())
	f, ok := m.families[fam]
	if !ok {
		f = &family{exp: exp}
		m.families[fam] = f
	}
	if exp.After(f.exp) {
		f.exp = exp
	}
	f.revoked = true
	m.mu.Unlock()
	return m.persistNow()
}

// Revoke implements Store.
func (m *Memory) Revoke(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errors.New("state: revoke: empty id")
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return unavailable("revoke", errClosed)
	}
	now := m.now()
	m.maybeSweep(now)
	if !exp.After(now) {
		// The token has expired already; it is rejected without a list
		// entry.
		m.mu.Unlock()
		return nil
	}
	if old, ok := m.revoked[jti]; !ok || exp.After(old) {
		m.revoked[jti] = exp
	}
	m.mu.Unlock()
	return m.persistNow()
}

// IsRevoked implements Store.
func (m *Memory) IsRevoked(ctx context.Context, jti string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, unavailable("is revoked", errClosed)
	}
	exp, ok := m.revoked[jti]
	return ok && exp.After(m.now()), nil
}

// Ping implements Store. It reports a closed store and the last failure to
// write the state file.
func (m *Memory) Ping(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("ping", errClosed)
	}
	if m.flushErr != nil {
		return unavailable("ping", m.flushErr)
	}
	return nil
}

// Close implements Store. It writes any pending change to the state file.
// Close is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.lim.close()
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	dirty := m.dirty
	m.mu.Unlock()
	if dirty {
		return m.flush()
	}
	return nil
}

// maybeSweep drops expired families and revocations at most once per
// sweepInterval. m.mu must be held.
func (m *Memory) maybeSweep(now time.Time) {
	if now.Sub(m.lastSweep) < sweepInterval {
		return
	}
	m.lastSweep = now
	n := 0
	for k, f := range m.families {
		if !f.exp.After(now) {
			delete(m.families, k)
			n++
		}
	}
	for k, exp := range m.revoked {
		if !exp.After(now) {
			delete(m.revoked, k)
			n++
		}
	}
	for k, nb := range m.notBefore {
		if !nb.exp.After(now) {
			delete(m.notBefore, k)
			n++
		}
	}
	n += m.sweepSessions(now)
	for k, r := range m.once {
		if !r.exp.After(now) {
			delete(m.once, k)
		}
	}
	if n > 0 {
		m.changed()
	}
}

// changed marks the state dirty and schedules a debounced write. m.mu must be
// held.
func (m *Memory) changed() {
	if m.path == "" {
		return
	}
	m.dirty = true
	if m.timer == nil && !m.closed {
		m.timer = time.AfterFunc(flushDelay, func() {
			m.mu.Lock()
			m.timer = nil
			m.mu.Unlock()
			_ = m.flush() // recorded in flushErr, reported by Ping
		})
	}
}

// persistNow writes the state file before returning. Revocations use it
// rather than the debounced write: losing a revocation in a crash would let a
// logged-out or stolen token work again after the restart (fail open).
// m.mu must not be held.
func (m *Memory) persistNow() error {
	if m.path == "" {
		return nil
	}
	m.mu.Lock()
	m.dirty = true
	m.mu.Unlock()
	return m.flush()
}
