package state

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds what ends credentials early: the access-token check
// against revoked tokens and revoked families, and the per-user not-before
// records that outlive a disable, a delete or a password change.

// notBefore is one subject's not-before record in a Memory.
type notBefore struct {
	at  time.Time // tokens issued before at are refused
	exp time.Time // the record is dropped at exp
}

// AccessRevoked implements Store.
func (m *Memory) AccessRevoked(ctx context.Context, jti, sid string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, unavailable("access revoked", errClosed)
	}
	now := m.now()
	if exp, ok := m.revoked[jti]; ok && exp.After(now) {
		return true, nil
	}
	if sid == "" {
		return false, nil
	}
	f, ok := m.families[sid]
	return ok && f.revoked && f.exp.After(now), nil
}

// RaiseNotBefore implements Store. A raised record is written to the state
// file before it returns: a record lost in a crash would let a re-enabled
// user's old tokens work again after the restart.
func (m *Memory) RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error {
	if err := checkNotBefore(at, keep); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return unavailable("raise not before", errClosed)
	}
	m.maybeSweep(m.now())
	changed := false
	for subject, t := range at {
		k := boundKey(subject)
		cur, ok := m.notBefore[k]
		exp := t.Add(keep)
		switch {
		case !ok:
			m.setNotBefore(k, notBefore{at: t, exp: exp})
		case t.After(cur.at):
			m.setNotBefore(k, notBefore{at: t, exp: later(exp, cur.exp)})
		case exp.After(cur.exp):
			m.setNotBefore(k, notBefore{at: cur.at, exp: exp})
		default:
			continue
		}
		changed = true
	}
	m.mu.Unlock()
	if !changed {
		return nil
	}
	return m.persistNow()
}

// setNotBefore stores a record, making the map on first use. m.mu must be
// held.
func (m *Memory) setNotBefore(k string, nb notBefore) {
	if m.notBefore == nil {
		m.notBefore = make(map[string]notBefore)
	}
	m.notBefore[k] = nb
}

// checkNotBefore validates the arguments of RaiseNotBefore.
func checkNotBefore(at map[string]time.Time, keep time.Duration) error {
	if keep <= 0 {
		return errors.New("state: raise not before: keep must be positive")
	}
	for subject, t := range at {
		if subject == "" || t.IsZero() {
			return errors.New("state: raise not before: empty subject or instant")
		}
	}
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// NotBefore implements Store.
func (m *Memory) NotBefore(ctx context.Context, subjects []string) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, unavailable("not before", errClosed)
	}
	now := m.now()
	out := make(map[string]time.Time)
	for _, s := range subjects {
		if nb, ok := m.notBefore[boundKey(s)]; ok && nb.exp.After(now) {
			out[s] = nb.at
		}
	}
	return out, nil
}

// raiseNotBeforeSrc raises not-before records.
// KEYS[i] the record of one subject; ARGV[2i-1] its instant in unix ms;
// ARGV[2i] the record's expiry in unix ms. A record is only ever raised,
// and its expiry only ever extended.
const raiseNotBeforeSrc = `
for i = 1, #KEYS do
  local at = tonumber(ARGV[2*i-1])
  local cur = tonumber(redis.call('GET', KEYS[i]) or '')
  if not cur or at > cur then
    redis.call('SET', KEYS[i], ARGV[2*i-1])
    redis.call('PEXPIREAT', KEYS[i], ARGV[2*i])
  else
    local pttl = redis.call('PTTL', KEYS[i])
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if pttl >= 0 and now + pttl < tonumber(ARGV[2*i]) then
      redis.call('PEXPIREAT', KEYS[i], ARGV[2*i])
    end
  end
end
return 0
`

// maxNotBeforeBatch bounds the keys of one script call or MGET, so a large
// users file never makes one command that blocks Redis for long.
const maxNotBeforeBatch = 500

// AccessRevoked implements Store: an EXISTS on the token's revocation key
// and an HEXISTS on its family's revoked flag, pipelined in one round trip.
func (r *Redis) AccessRevoked(ctx context.Context, jti, sid string) (bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	tok := pipe.Exists(ctx, r.prefix+"rev:"+boundKey(jti))
	var fam *redis.BoolCmd
	if sid != "" {
		fam = pipe.HExists(ctx, r.familyKey(sid), "rev")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable("access revoked", err)
	}
	return tok.Val() > 0 || (fam != nil && fam.Val()), nil
}

// RaiseNotBefore implements Store.
func (r *Redis) RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error {
	if err := checkNotBefore(at, keep); err != nil {
		return err
	}
	keys := make([]string, 0, len(at))
	args := make([]any, 0, 2*len(at))
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		octx, cancel := r.op(ctx)
		defer cancel()
		err := r.raiseScript.Run(octx, r.client, keys, args...).Err()
		keys, args = keys[:0], args[:0]
		if err != nil {
			return unavailable("raise not before", err)
		}
		return nil
	}
	for subject, t := range at {
		keys = append(keys, r.notBeforeKey(subject))
		args = append(args, t.UnixMilli(), t.Add(keep).UnixMilli())
		if len(keys) == maxNotBeforeBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// NotBefore implements Store.
func (r *Redis) NotBefore(ctx context.Context, subjects []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	for start := 0; start < len(subjects); start += maxNotBeforeBatch {
		batch := subjects[start:min(start+maxNotBeforeBatch, len(subjects))]
		keys := make([]string, len(batch))
		for i, s := range batch {
			keys[i] = r.notBeforeKey(s)
		}
		octx, cancel := r.op(ctx)
		vals, err := r.client.MGet(octx, keys...).Result()
		cancel()
		if err != nil {
			return nil, unavailable("not before", err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // no record
			}
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				// A record that cannot be read is not ignored: ignoring
				// it would accept the tokens it refuses.
				return nil, unavailable("not before", errors.New("malformed record"))
			}
			out[batch[i]] = time.UnixMilli(ms)
		}
	}
	return out, nil
}

// notBeforeKey is the key of a subject's not-before record.
func (r *Redis) notBeforeKey(subject string) string { return r.prefix + "nb:" + boundKey(subject) }
