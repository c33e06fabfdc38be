package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds browser sessions: records kept server side under the
// digest of the session id, so a dump of the store does not yield a single
// cookie that works.

// Errors of the session operations.
var (
	// ErrNoSession reports a session that is unknown, ended or expired.
	ErrNoSession = errors.New("state: no such session")
	// ErrSessionExpired wraps ErrNoSession when the store still saw the
	// expired record (the embedded store), so the ending can be counted.
	ErrSessionExpired = fmt.Errorf("%w: expired", ErrNoSession)
)

// Session is one browser session. Its key (the digest of the cookie) is
// not part of the record. A Session is a value; Data must not be modified
// by the receiver.
type Session struct {
	// Subject is whom the session authenticates: a username of the users
	// file, or the issuer-namespaced subject of an external provider.
	Subject string `json:"sub"`
	// Issuer is the external provider's issuer; empty for the gateway's
	// own users.
	Issuer string `json:"iss,omitempty"`
	// Roles are the roles granted at sign-in.
	Roles []string `json:"roles,omitempty"`
	// Ver is the user's credential fingerprint at sign-in (users file).
	Ver string `json:"ver,omitempty"`
	// AuthTime is the sign-in.
	AuthTime time.Time `json:"at"`
	// Expires is the idle expiry, moved on by TouchSession but never past
	// MaxExpires.
	Expires time.Time `json:"exp"`
	// MaxExpires is the absolute end of the session.
	MaxExpires time.Time `json:"max"`
	// Data is opaque to the store (an external provider's tokens).
	Data []byte `json:"data,omitempty"`
}

// SessionStore holds browser sessions. Every operation is atomic, and a
// session that has ended is never brought back by a later touch or
// update. Implementations are safe for concurrent use.
type SessionStore interface {
	// CreateSession stores s under key. A key that exists is an error.
	CreateSession(ctx context.Context, key string, s Session) error
	// Session returns the live session under key, or ErrNoSession.
	Session(ctx context.Context, key string) (Session, error)
	// TouchSession moves the idle expiry of a live session to exp (never
	// past its MaxExpires), or returns ErrNoSession.
	TouchSession(ctx context.Context, key string, exp time.Time) error
	// UpdateSession replaces the Data of a live session, or returns
	// ErrNoSession.
	UpdateSession(ctx context.Context, key string, data []byte) error
	// EndSession removes the session under key and returns it, or
	// returns ErrNoSession.
	EndSession(ctx context.Context, key string) (Session, error)
	// EndSessions removes every session of a subject, named by
	// SubjectKey, and returns their keys.
	EndSessions(ctx context.Context, subjectKey string) ([]string, error)
	// SessionCount returns the number of live sessions.
	SessionCount(ctx context.Context) (int, error)
	// PutOnce stores a short-lived record under key until exp, unless
	// the key exists (an error). Sign-in flows keep their state in it.
	PutOnce(ctx context.Context, key string, val []byte, exp time.Time) error
	// TakeOnce removes the record under key and returns it, atomically:
	// of two callers at most one gets it. A missing or expired record is
	// ErrNoSession.
	TakeOnce(ctx context.Context, key string) ([]byte, error)
}

// SubjectKey names a subject across issuers: the gateway's users by their
// name, an external provider's by issuer and subject, so that equal
// subjects of two providers stay two people.
func SubjectKey(issuer, subject string) string {
	if issuer == "" {
		return subject
	}
	return issuer + "\x00" + subject
}

// checkSession validates a record before it is stored.
func checkSession(key string, s Session) error {
	switch {
	case key == "" || s.Subject == "":
		return errors.New("state: create session: empty key or subject")
	case s.Expires.IsZero() || s.MaxExpires.IsZero() || s.Expires.After(s.MaxExpires):
		return errors.New("state: create session: expiry missing or past the absolute expiry")
	}
	return nil
}

// liveSession is a session of a Memory with its subject index.
func (m *Memory) liveSession(key string, now time.Time) (*Session, error) {
	s, ok := m.sessions[key]
	if !ok {
		return nil, ErrNoSession
	}
	if !s.Expires.After(now) {
		m.dropSession(key, s)
		return nil, ErrSessionExpired
	}
	return s, nil
}

// dropSession removes a session and its index entry. m.mu must be held.
func (m *Memory) dropSession(key string, s *Session) {
	delete(m.sessions, key)
	sk := SubjectKey(s.Issuer, s.Subject)
	if set := m.bySubject[sk]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(m.bySubject, sk)
		}
	}
	m.changed()
}

// CreateSession implements SessionStore.
func (m *Memory) CreateSession(ctx context.Context, key string, s Session) error {
	if err := checkSession(key, s); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("create session", errClosed)
	}
	now := m.now()
	m.maybeSweep(now)
	if _, err := m.liveSession(key, now); err == nil {
		return errors.New("state: create session: key exists")
	}
	m.putSession(key, s)
	m.changed()
	return nil
}

// putSession stores a session and indexes it. m.mu must be held.
func (m *Memory) putSession(key string, s Session) {
	if m.sessions == nil {
		m.sessions = make(map[string]*Session)
		m.bySubject = make(map[string]map[string]struct{})
	}
	s.Roles = slices.Clone(s.Roles)
	s.Data = slices.Clone(s.Data)
	m.sessions[key] = &s
	sk := SubjectKey(s.Issuer, s.Subject)
	set := m.bySubject[sk]
	if set == nil {
		set = make(map[string]struct{})
		m.bySubject[sk] = set
	}
	set[key] = struct{}{}
}

// Session implements SessionStore.
func (m *Memory) Session(ctx context.Context, key string) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Session{}, unavailable("session", errClosed)
	}
	s, err := m.liveSession(key, m.now())
	if err != nil {
		return Session{}, err
	}
	// Roles and Data are never modified in place (UpdateSession
	// replaces Data), so the copy may share them.
	return *s, nil
}

// TouchSession implements SessionStore. The move is not written to the
// state file at once: losing it in a crash only ends the session earlier.
func (m *Memory) TouchSession(ctx context.Context, key string, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("touch session", errClosed)
	}
	s, err := m.liveSession(key, m.now())
	if err != nil {
		return err
	}
	if exp.After(s.MaxExpires) {
		exp = s.MaxExpires
	}
	s.Expires = exp
	m.changed()
	return nil
}

// UpdateSession implements SessionStore.
func (m *Memory) UpdateSession(ctx context.Context, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("update session", errClosed)
	}
	s, err := m.liveSession(key, m.now())
	if err != nil {
		return err
	}
	s.Data = slices.Clone(data)
	m.changed()
	return nil
}

// EndSession implements SessionStore. The end is written to the state
// file before it returns: a session brought back by a restart would undo a
// sign-out.
func (m *Memory) EndSession(ctx context.Context, key string) (Session, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Session{}, unavailable("end session", errClosed)
	}
	s, err := m.liveSession(key, m.now())
	if err != nil {
		m.mu.Unlock()
		return Session{}, err
	}
	m.dropSession(key, s)
	m.mu.Unlock()
	return *s, m.persistNow()
}

// EndSessions implements SessionStore.
func (m *Memory) EndSessions(ctx context.Context, subject string) ([]string, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, unavailable("end sessions", errClosed)
	}
	var keys []string
	for key := range m.bySubject[subject] {
		keys = append(keys, key)
		m.dropSession(key, m.sessions[key])
	}
	m.mu.Unlock()
	slices.Sort(keys)
	if len(keys) == 0 {
		return nil, nil
	}
	return keys, m.persistNow()
}

// SessionCount implements SessionStore.
func (m *Memory) SessionCount(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, unavailable("session count", errClosed)
	}
	now := m.now()
	n := 0
	for _, s := range m.sessions {
		if s.Expires.After(now) {
			n++
		}
	}
	return n, nil
}

// sweepSessions drops expired sessions. m.mu must be held.
func (m *Memory) sweepSessions(now time.Time) int {
	n := 0
	for key, s := range m.sessions {
		if !s.Expires.After(now) {
			m.dropSession(key, s)
			n++
		}
	}
	return n
}

// Redis layout. A session is one hash, {s:<key>}, expiring at its idle
// expiry: field v holds the record as JSON, exp and max the expiries in
// unix ms. The subject's index {u:<subject>}:sess is a sorted set of its
// session keys scored by absolute expiry, and sess:all counts live
// sessions scored by idle expiry. Each script touches only keys of one
// hash slot; the indexes are written by separate commands.

// createSessionSrc creates a session unless its key exists.
// KEYS[1] session; ARGV[1] record JSON; ARGV[2] exp ms; ARGV[3] max ms.
const createSessionSrc = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'exp', ARGV[2], 'max', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0
`

// touchSessionSrc moves a live session's idle expiry, never past max.
// KEYS[1] session; ARGV[1] exp ms; ARGV[2] now ms. Returns the new exp,
// or -1 for a session that is gone or past its expiry.
const touchSessionSrc = `
local cur = redis.call('HMGET', KEYS[1], 'exp', 'max')
if not cur[1] or not cur[2] or tonumber(cur[1]) <= tonumber(ARGV[2]) then return -1 end
local max = cur[2]
local exp = math.min(tonumber(ARGV[1]), tonumber(max))
redis.call('HSET', KEYS[1], 'exp', tostring(exp))
redis.call('PEXPIREAT', KEYS[1], exp)
return exp
`

// updateSessionSrc replaces a live session's record.
// KEYS[1] session; ARGV[1] record JSON; ARGV[2] now ms. Returns 0, or -1.
const updateSessionSrc = `
local exp = redis.call('HGET', KEYS[1], 'exp')
if not exp or tonumber(exp) <= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1])
return 0
`

// endSessionSrc removes a session and returns its record, or false.
const endSessionSrc = `
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return false end
redis.call('DEL', KEYS[1])
return v
`

func (r *Redis) sessionKey(key string) string { return r.prefix + "s:{" + boundKey(key) + "}" }
func (r *Redis) subjectSessionsKey(subject string) string {
	return r.prefix + "{u:" + boundKey(subject) + "}:sess"
}
func (r *Redis) allSessionsKey() string { return r.prefix + "sess:all" }

// CreateSession implements SessionStore.
func (r *Redis) CreateSession(ctx context.Context, key string, s Session) error {
	if err := checkSession(key, s); err != nil {
		return err
	}
	v, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state: create session: %w", err)
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.sessionScripts.create.Run(octx, r.client, []string{r.sessionKey(key)}, v, s.Expires.UnixMilli(), s.MaxExpires.UnixMilli()).Int64()
	if err != nil {
		return unavailable("create session", err)
	}
	if n != 0 {
		return errors.New("state: create session: key exists")
	}
	// The indexes: a failure here leaves a session that sign-out
	// everywhere cannot find, so the creation fails and the session goes.
	now := r.clock().UnixMilli()
	idx, all := r.subjectSessionsKey(SubjectKey(s.Issuer, s.Subject)), r.allSessionsKey()
	maxMS := s.MaxExpires.UnixMilli()
	pipe := r.client.Pipeline()
	pipe.ZAdd(octx, idx, redis.Z{Score: float64(maxMS), Member: key})
	pipe.ZRemRangeByScore(octx, idx, "-inf", strconv.FormatInt(now, 10))
	pipe.ZAdd(octx, all, redis.Z{Score: float64(s.Expires.UnixMilli()), Member: key})
	pipe.ZRemRangeByScore(octx, all, "-inf", strconv.FormatInt(now, 10))
	for _, k := range []string{idx, all} {
		// Every key expires: each index lives as long as its longest
		// session (NX sets a first expiry, GT only ever extends it).
		pipe.Do(octx, "PEXPIREAT", k, maxMS, "NX")
		pipe.Do(octx, "PEXPIREAT", k, maxMS, "GT")
	}
	if _, err := pipe.Exec(octx); err != nil {
		_ = r.client.Del(context.WithoutCancel(ctx), r.sessionKey(key)).Err()
		return unavailable("create session", err)
	}
	return nil
}

// Session implements SessionStore.
func (r *Redis) Session(ctx context.Context, key string) (Session, error) {
	octx, cancel := r.op(ctx)
	defer cancel()
	vals, err := r.client.HMGet(octx, r.sessionKey(key), "v", "exp").Result()
	if err != nil {
		return Session{}, unavailable("session", err)
	}
	v, ok1 := vals[0].(string)
	exp, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return Session{}, ErrNoSession
	}
	return decodeSession(v, exp, r.clock())
}

// decodeSession reads a stored record. A record that cannot be read is an
// error, not an absent session: an unreadable record must not pass.
func decodeSession(v, exp string, now time.Time) (Session, error) {
	var s Session
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return Session{}, unavailable("session", errors.New("malformed record"))
	}
	ms, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return Session{}, unavailable("session", errors.New("malformed record"))
	}
	s.Expires = time.UnixMilli(ms)
	if !s.Expires.After(now) {
		return Session{}, ErrNoSession
	}
	return s, nil
}

// TouchSession implements SessionStore.
func (r *Redis) TouchSession(ctx context.Context, key string, exp time.Time) error {
	octx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.sessionScripts.touch.Run(octx, r.client, []string{r.sessionKey(key)}, exp.UnixMilli(), r.clock().UnixMilli()).Int64()
	if err != nil {
		return unavailable("touch session", err)
	}
	if n < 0 {
		return ErrNoSession
	}
	// XX: the count follows a live session, never adds an ended one.
	_ = r.client.ZAddXX(octx, r.allSessionsKey(), redis.Z{Score: float64(n), Member: key}).Err()
	return nil
}

// UpdateSession implements SessionStore.
func (r *Redis) UpdateSession(ctx context.Context, key string, data []byte) error {
	s, err := r.Session(ctx, key)
	if err != nil {
		return err
	}
	s.Data = data
	v, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state: update session: %w", err)
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	n, err := r.sessionScripts.update.Run(octx, r.client, []string{r.sessionKey(key)}, v, r.clock().UnixMilli()).Int64()
	if err != nil {
		return unavailable("update session", err)
	}
	if n < 0 {
		return ErrNoSession
	}
	return nil
}

// EndSession implements SessionStore.
func (r *Redis) EndSession(ctx context.Context, key string) (Session, error) {
	octx, cancel := r.op(ctx)
	defer cancel()
	v, err := r.sessionScripts.end.Run(octx, r.client, []string{r.sessionKey(key)}).Text()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, unavailable("end session", err)
	}
	var s Session
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return Session{}, unavailable("end session", errors.New("malformed record"))
	}
	pipe := r.client.Pipeline()
	pipe.ZRem(octx, r.subjectSessionsKey(SubjectKey(s.Issuer, s.Subject)), key)
	pipe.ZRem(octx, r.allSessionsKey(), key)
	_, _ = pipe.Exec(octx) // the indexes only lag; the session is gone
	return s, nil
}

// EndSessions implements SessionStore.
func (r *Redis) EndSessions(ctx context.Context, subject string) ([]string, error) {
	octx, cancel := r.op(ctx)
	keys, err := r.client.ZRange(octx, r.subjectSessionsKey(subject), 0, -1).Result()
	cancel()
	if err != nil {
		return nil, unavailable("end sessions", err)
	}
	var ended []string
	for _, k := range keys {
		switch _, err := r.EndSession(ctx, k); {
		case err == nil:
			ended = append(ended, k)
		case !errors.Is(err, ErrNoSession):
			return ended, err
		}
	}
	octx, cancel = r.op(ctx)
	defer cancel()
	if err := r.client.Del(octx, r.subjectSessionsKey(subject)).Err(); err != nil {
		return ended, unavailable("end sessions", err)
	}
	slices.Sort(ended)
	return ended, nil
}

// SessionCount implements SessionStore. It counts sessions whose idle
// expiry, as last recorded, lies ahead.
func (r *Redis) SessionCount(ctx context.Context) (int, error) {
	octx, cancel := r.op(ctx)
	defer cancel()
	now := strconv.FormatInt(r.clock().UnixMilli(), 10)
	n, err := r.client.ZCount(octx, r.allSessionsKey(), "("+now, "+inf").Result()
	if err != nil {
		return 0, unavailable("session count", err)
	}
	return int(n), nil
}

// sessionScripts are the Redis store's session scripts.
type sessionScripts struct {
	create, touch, update, end *redis.Script
}

func newSessionScripts() sessionScripts {
	return sessionScripts{
		create: redis.NewScript(createSessionSrc),
		touch:  redis.NewScript(touchSessionSrc),
		update: redis.NewScript(updateSessionSrc),
		end:    redis.NewScript(endSessionSrc),
	}
}

// onceRecord is a PutOnce record of a Memory.
type onceRecord struct {
	val []byte
	exp time.Time
}

// PutOnce implements SessionStore. The records are not persisted: a
// restart only makes a sign-in in progress start again.
func (m *Memory) PutOnce(ctx context.Context, key string, val []byte, exp time.Time) error {
	if key == "" {
		return errors.New("state: put once: empty key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return unavailable("put once", errClosed)
	}
	now := m.now()
	if r, ok := m.once[key]; ok && r.exp.After(now) {
		return errors.New("state: put once: key exists")
	}
	if m.once == nil {
		m.once = make(map[string]onceRecord)
	}
	if len(m.once) >= maxOnce {
		for k, r := range m.once {
			if !r.exp.After(now) {
				delete(m.once, k)
			}
		}
		if len(m.once) >= maxOnce {
			// A flood of abandoned sign-ins must not grow memory without
			// bound; new ones wait for old ones to expire.
			return unavailable("put once", errors.New("too many pending records"))
		}
	}
	m.once[key] = onceRecord{val: slices.Clone(val), exp: exp}
	return nil
}

// maxOnce bounds the PutOnce records of a Memory.
const maxOnce = 100000

// TakeOnce implements SessionStore.
func (m *Memory) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, unavailable("take once", errClosed)
	}
	r, ok := m.once[key]
	delete(m.once, key)
	if !ok || !r.exp.After(m.now()) {
		return nil, ErrNoSession
	}
	return r.val, nil
}

// PutOnce implements SessionStore.
func (r *Redis) PutOnce(ctx context.Context, key string, val []byte, exp time.Time) error {
	if key == "" {
		return errors.New("state: put once: empty key")
	}
	ttl := exp.Sub(r.clock())
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	octx, cancel := r.op(ctx)
	defer cancel()
	ok, err := r.client.SetNX(octx, r.prefix+"once:{"+boundKey(key)+"}", val, ttl).Result()
	if err != nil {
		return unavailable("put once", err)
	}
	if !ok {
		return errors.New("state: put once: key exists")
	}
	return nil
}

// TakeOnce implements SessionStore with GETDEL: one atomic command.
func (r *Redis) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	octx, cancel := r.op(ctx)
	defer cancel()
	v, err := r.client.GetDel(octx, r.prefix+"once:{"+boundKey(key)+"}").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, unavailable("take once", err)
	}
	return v, nil
}
