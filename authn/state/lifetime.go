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
// and its expiry only ever extended. The store calls it with one key at a
// time, so that on a cluster each call stays in its key's slot.
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

// maxNotBeforeBatch bounds the records of one round trip, so a large users
// file never makes one pipeline that blocks Redis for long.
const maxNotBeforeBatch = 500

// AccessRevoked implements Store: an EXISTS on the token's revocation key
// and an HEXISTS on its family's revoked flag (and, off Cluster, on their
// names in the previous release's layout), pipelined in one round trip
// (one per node holding them on a cluster).
func (r *Redis) AccessRevoked(ctx context.Context, jti, sid string) (bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	pipe := r.client.Pipeline()
	var hits []*redis.IntCmd
	for _, key := range r.withLegacy(r.revokedKey(jti), kindRevoked, jti) {
		hits = append(hits, pipe.Exists(ctx, key))
	}
	var fams []*redis.BoolCmd
	if sid != "" {
		for _, key := range r.familyKeys(sid) {
			fams = append(fams, pipe.HExists(ctx, key, "rev"))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, unavailable("access revoked", err)
	}
	for _, h := range hits {
		if h.Val() > 0 {
			return true, nil
		}
	}
	for _, f := range fams {
		if f.Val() {
			return true, nil
		}
	}
	return false, nil
}

// RaiseNotBefore implements Store.
func (r *Redis) RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error {
	if err := checkNotBefore(at, keep); err != nil {
		return err
	}
	keys := make([]string, 0, min(len(at), maxNotBeforeBatch))
	args := make([][]any, 0, cap(keys))
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		octx, cancel := r.op(ctx)
		defer cancel()
		err := r.durableEach(octx, r.raiseScript, keys, args)
		keys, args = keys[:0], args[:0]
		if err != nil {
			return unavailable("raise not before", err)
		}
		return nil
	}
	for subject, t := range at {
		keys = append(keys, r.notBeforeKey(subject))
		args = append(args, []any{t.UnixMilli(), t.Add(keep).UnixMilli()})
		if len(keys) == maxNotBeforeBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// NotBefore implements Store. Off Cluster a record of the previous
// release's layout counts too; the later instant wins.
func (r *Redis) NotBefore(ctx context.Context, subjects []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	for start := 0; start < len(subjects); start += maxNotBeforeBatch {
		batch := subjects[start:min(start+maxNotBeforeBatch, len(subjects))]
		octx, cancel := r.op(ctx)
		pipe := r.client.Pipeline()
		gets := make([][]*redis.StringCmd, len(batch))
		for i, s := range batch {
			for _, key := range r.withLegacy(r.notBeforeKey(s), kindNotBefore, s) {
				gets[i] = append(gets[i], pipe.Get(octx, key))
			}
		}
		_, err := pipe.Exec(octx)
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable("not before", err)
		}
		for i, cmds := range gets {
			for _, c := range cmds {
				v, err := c.Result()
				if errors.Is(err, redis.Nil) {
					continue // no record
				}
				ms, perr := strconv.ParseInt(v, 10, 64)
				if err != nil || perr != nil {
					// A record that cannot be read is not ignored: ignoring
					// it would accept the tokens it refuses.
					return nil, unavailable("not before", errors.New("malformed record"))
				}
				if t := time.UnixMilli(ms); t.After(out[batch[i]]) {
					out[batch[i]] = t
				}
			}
		}
	}
	return out, nil
}
