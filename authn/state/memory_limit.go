package state

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// evictScan is how many entries that hold nothing any more a limiter call
// drops from each table it touches.
const evictScan = 4

// limiter is the embedded store's rate-limit state. Each kind of bucket has
// a table of its own, bounded by MaxKeys: one per Allow scope, one for
// (account, client) pairs and one each for accounts that exist and names
// that do not. It has its own lock, apart from families and revocations.
type limiter struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	closed  bool
	scopes  map[Scope]*table[int64] // bucket TATs
	pairs   *table[pairState]
	known   *table[accountState]
	unknown *table[accountState]
}

func newLimiter(now func() time.Time, maxKeys int) *limiter {
	return &limiter{
		now:     now,
		max:     maxKeys,
		scopes:  make(map[Scope]*table[int64]),
		pairs:   newTable[pairState](maxKeys),
		known:   newTable[accountState](maxKeys),
		unknown: newTable[accountState](maxKeys),
	}
}

// pairState is an account's state with one client.
type pairState struct {
	tat    int64 // LoginLimits.PerClient bucket
	failed int64 // the client's last failure on the account, unix ns; 0 none
}

// cleanAt is the instant the client counts as clean for the account again:
// nothing charged to its bucket, in flight or failed, and its last failure
// CleanAfter behind. It is also the instant the pair holds nothing.
func (p pairState) cleanAt(l LoginLimits) int64 {
	if p.failed == 0 {
		return p.tat
	}
	return max(p.tat, p.failed+int64(l.CleanAfter))
}

// accountState is an account's budget and its known clients.
type accountState struct {
	user, known, clean int64 // tier TATs
	clients            []knownClient
}

// knownClient is a client that logged in successfully, known until until.
type knownClient struct {
	client string
	until  int64
}

// tat returns the TAT of tier t.
func (a *accountState) tat(t LoginTier) *int64 {
	switch t {
	case TierKnown:
		return &a.known
	case TierClean:
		return &a.clean
	}
	return &a.user
}

// until is the instant the account holds nothing.
func (a accountState) until() int64 {
	u := max(a.user, a.known, a.clean)
	for _, c := range a.clients {
		u = max(u, c.until)
	}
	return u
}

func (a accountState) isKnown(client string, now int64) bool {
	for _, c := range a.clients {
		if c.client == client {
			return c.until > now
		}
	}
	return false
}

// remember makes client known until until, keeping the MaxKnownClients
// latest. It builds a new slice: a's may be shared with the stored value.
func (a *accountState) remember(client string, until, now int64) {
	kept := make([]knownClient, 0, MaxKnownClients)
	kept = append(kept, knownClient{client, until})
	for _, c := range a.clients {
		if c.client != client && c.until > now {
			kept = append(kept, c)
		}
	}
	for len(kept) > MaxKnownClients {
		oldest := 0
		for i, c := range kept {
			if c.until < kept[oldest].until {
				oldest = i
			}
		}
		kept = append(kept[:oldest], kept[oldest+1:]...)
	}
	a.clients = kept
}

// decideLogin is CheckLogin on the stored state. It returns the verdict and
// the state to store when the attempt is allowed. The Redis script
// loginCheckSrc is the same procedure.
func decideLogin(p pairState, a accountState, client string, now int64, l LoginLimits) (LoginVerdict, pairState, accountState) {
	pairNext, ok, retry := take(p.tat, now, l.PerClient)
	if !ok {
		return LoginVerdict{Refused: RefusedClient, RetryAfter: retry}, p, a
	}
	cleanAt := p.cleanAt(l)
	known := a.isKnown(client, now)
	wait := time.Duration(math.MaxInt64)
	for _, t := range [...]LoginTier{TierUser, TierKnown, TierClean} {
		var notBefore time.Duration
		switch t {
		case TierKnown:
			if !known {
				continue
			}
		case TierClean:
			// A client with a recent failure, or an attempt still in
			// flight, is not clean: a few addresses cannot drain the
			// Clean tier, and one address cannot take it twice at
			// once.
			notBefore = time.Duration(cleanAt - now)
		}
		tat := a.tat(t)
		next, ok, r := take(*tat, now, l.tier(t))
		if ok && notBefore <= 0 {
			*tat = next
			p.tat = pairNext
			return LoginVerdict{Allowed: true, Tier: t}, p, a
		}
		wait = min(wait, max(r, notBefore))
	}
	return LoginVerdict{Refused: RefusedAccount, RetryAfter: wait}, p, a
}

// settleLogin is SettleLogin on the stored state; loginSettleSrc is the same
// procedure.
func settleLogin(p pairState, a accountState, k LoginKey, now int64, l LoginLimits, tier LoginTier, o LoginOutcome) (pairState, accountState) {
	if o == LoginFailed {
		p.failed = now
		return p, a
	}
	// Only failures are guesses: a success, or an attempt that never
	// checked its password, gives back what it took.
	p.tat = refund(p.tat, now, l.PerClient)
	tat := a.tat(tier)
	*tat = refund(*tat, now, l.tier(tier))
	if o == LoginSucceeded {
		p.failed = 0
		if k.Known {
			a.remember(k.Client, now+int64(l.KnownFor), now)
		}
	}
	return p, a
}

// allow implements Store.Allow.
func (lm *limiter) allow(scope Scope, id string, l Limit) (bool, time.Duration, error) {
	if err := errors.Join(scope.validate(), l.Validate()); err != nil {
		return false, 0, err
	}
	key := boundKey(id)
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.closed {
		return false, 0, unavailable("allow", errClosed)
	}
	t, ok := lm.scopes[scope]
	if !ok {
		if len(lm.scopes) >= maxScopes {
			return false, 0, fmt.Errorf("state: allow: more than %d scopes", maxScopes)
		}
		t = newTable[int64](lm.max)
		lm.scopes[scope] = t
	}
	now := lm.now().UnixNano()
	t.sweep(now, evictScan)
	next, ok, retry := take(t.get(key, now), now, l)
	if !ok {
		return false, retry, nil
	}
	t.set(key, now, next, next)
	return true, 0, nil
}

// login runs fn on the stored state of k's pair and account under the lock
// and stores what fn returns.
func (lm *limiter) login(op string, k LoginKey, l LoginLimits,
	fn func(p pairState, a accountState, now int64) (pairState, accountState, bool)) error {
	if err := errors.Join(k.validate(), l.Validate()); err != nil {
		return err
	}
	tag := accountTag(k)
	pairKey := tag + "}" + boundKey(k.Client)
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.closed {
		return unavailable(op, errClosed)
	}
	accounts := lm.unknown
	if k.Known {
		accounts = lm.known
	}
	now := lm.now().UnixNano()
	lm.pairs.sweep(now, evictScan)
	accounts.sweep(now, evictScan)
	p, a, store := fn(lm.pairs.get(pairKey, now), accounts.get(tag, now), now)
	if store {
		lm.pairs.set(pairKey, now, p, p.cleanAt(l))
		accounts.set(tag, now, a, a.until())
	}
	return nil
}

// CheckLogin implements LoginLimiter.
func (m *Memory) CheckLogin(ctx context.Context, k LoginKey, l LoginLimits) (LoginVerdict, error) {
	var v LoginVerdict
	err := m.lim.login("check login", k, l, func(p pairState, a accountState, now int64) (pairState, accountState, bool) {
		v, p, a = decideLogin(p, a, k.Client, now, l)
		return p, a, v.Allowed
	})
	return v, err
}

// SettleLogin implements LoginLimiter.
func (m *Memory) SettleLogin(ctx context.Context, k LoginKey, l LoginLimits, tier LoginTier, o LoginOutcome) error {
	if err := o.validate(tier); err != nil {
		return err
	}
	return m.lim.login("settle login", k, l, func(p pairState, a accountState, now int64) (pairState, accountState, bool) {
		p, a = settleLogin(p, a, k, now, l, tier, o)
		return p, a, true
	})
}

// Allow implements Store. Each scope has its own table of at most MaxKeys
// buckets.
func (m *Memory) Allow(ctx context.Context, scope Scope, id string, l Limit) (bool, time.Duration, error) {
	return m.lim.allow(scope, id, l)
}

// Len returns the number of limiter entries held, over all tables.
func (m *Memory) Len() int {
	lm := m.lim
	lm.mu.Lock()
	defer lm.mu.Unlock()
	n := lm.pairs.len() + lm.known.len() + lm.unknown.len()
	for _, t := range lm.scopes {
		n += t.len()
	}
	return n
}

// close makes every later call fail with ErrUnavailable.
func (lm *limiter) close() {
	lm.mu.Lock()
	lm.closed = true
	lm.mu.Unlock()
}
