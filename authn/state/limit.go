package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Scope names a family of limiter buckets, such as "login:ip". Each scope
// has buckets of its own: in the embedded store a separate bounded map, so
// that a flood in one scope (garbage refresh requests from fresh addresses)
// can never evict a bucket of another (a login limit) and reset it. Scopes
// are a small closed set chosen by the caller, never client input: lower-case
// letters, digits, '_' and ':', at most 32 bytes.
type Scope string

// maxScopes bounds the number of distinct scopes a Memory accepts, so that
// the number of bucket maps, like their size, has a bound.
const maxScopes = 16

// validate reports whether s is a well-formed scope.
func (s Scope) validate() error {
	if s == "" || len(s) > 32 {
		return fmt.Errorf("state: scope %q must be 1 to 32 bytes", string(s))
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != ':' {
			return fmt.Errorf("state: scope %q may hold only a-z, 0-9, '_' and ':'", string(s))
		}
	}
	return nil
}

// LoginLimiter decides login attempts for one account name. It implements
// the "per (user, client) plus per user" pattern (OWASP Authentication
// Cheat Sheet, Keycloak brute-force detection) without its lockout flaw:
// failures from other clients cannot lock a user out of a client that has
// not failed, and a guesser spread over any number of clients still gets no
// more than the account's budget.
//
// An attempt is checked before its password is (CheckLogin), which charges
// it atomically to
//
//   - the account's bucket with its client: LoginLimits.PerClient, strict;
//   - one tier of the account's budget, the first with a token: User (any
//     client), then Known (clients that logged in as this account within
//     KnownFor), then Clean (clients with no failure for this account within
//     CleanAfter and none in flight).
//
// SettleLogin then reports the outcome. A failure stays charged and marks
// the client as having failed; a success and an attempt whose password was
// never checked are refunded, since only failures are guesses. A success
// also remembers the client as known (the MaxKnownClients most recent).
//
// Refusals charge nothing. Implementations are safe for concurrent use and
// decide each call atomically, also across replicas.
type LoginLimiter interface {
	// CheckLogin decides whether the attempt k may check its password.
	CheckLogin(ctx context.Context, k LoginKey, l LoginLimits) (LoginVerdict, error)
	// SettleLogin reports the outcome of an attempt that CheckLogin
	// admitted with tier.
	SettleLogin(ctx context.Context, k LoginKey, l LoginLimits, tier LoginTier, o LoginOutcome) error
}

// LoginKey names the buckets of one login attempt.
type LoginKey struct {
	// Account is the account name: the canonical username when Known,
	// otherwise the normalized name the client typed.
	Account string
	// Known reports whether Account is an account that exists. Names that
	// do not exist get buckets of their own, behaving exactly like those of
	// real accounts (so the answers do not reveal which names exist) but
	// kept apart: a flood of invented names never evicts a real account's
	// buckets.
	Known bool
	// Client is the client's bucket: an IPv4 address or an IPv6 /64.
	Client string
}

// validate reports whether k names buckets.
func (k LoginKey) validate() error {
	if k.Account == "" || k.Client == "" {
		return errors.New("state: login key needs an account and a client")
	}
	return nil
}

// MaxKnownClients is how many clients an account remembers as known: the
// most recent ones to log in successfully. The bound is per account, so
// that the holder of one account's password cannot, by logging in from many
// addresses, push other accounts' known clients out.
const MaxKnownClients = 8

// LoginLimits are the budgets of CheckLogin. Every Limit and duration must be
// set; the zero value is invalid.
type LoginLimits struct {
	// PerClient limits failed attempts on one account from one client.
	PerClient Limit
	// User limits failed attempts on one account from all clients.
	User Limit
	// Known limits, once User is spent, failed attempts from the account's
	// known clients: reserved for them, so a guesser elsewhere cannot spend
	// it.
	Known Limit
	// Clean limits, once User is spent, failed attempts from clients with
	// no recent failure for the account.
	Clean Limit
	// CleanAfter is how long a failure keeps a client from the Clean tier
	// of that account.
	CleanAfter time.Duration
	// KnownFor is how long a successful login keeps a client known.
	KnownFor time.Duration
}

// Validate reports every invalid field.
func (l LoginLimits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		l    Limit
	}{{"per client", l.PerClient}, {"user", l.User}, {"known", l.Known}, {"clean", l.Clean}} {
		if err := f.l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("state: login limit %s: %w", f.name, err))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"clean after", l.CleanAfter}, {"known for", l.KnownFor}} {
		if d.v <= 0 || d.v > MaxWindow {
			errs = append(errs, fmt.Errorf("state: login %s must be in (0, %s], got %s", d.name, MaxWindow, d.v))
		}
	}
	return errors.Join(errs...)
}

// tier returns the Limit of tier t.
func (l LoginLimits) tier(t LoginTier) Limit {
	switch t {
	case TierUser:
		return l.User
	case TierKnown:
		return l.Known
	case TierClean:
		return l.Clean
	}
	return Limit{}
}

// LoginTier is the account budget an admitted attempt was charged to.
type LoginTier uint8

// Login tiers, tried in this order.
const (
	// TierNone: nothing was charged (the attempt was refused).
	TierNone LoginTier = iota
	// TierUser is LoginLimits.User.
	TierUser
	// TierKnown is LoginLimits.Known.
	TierKnown
	// TierClean is LoginLimits.Clean.
	TierClean
)

// String returns the tier's name, a closed set fit for a metric label.
func (t LoginTier) String() string {
	switch t {
	case TierUser:
		return "user"
	case TierKnown:
		return "known"
	case TierClean:
		return "clean"
	}
	return "none"
}

// LoginRefusal names the limit that refused an attempt.
type LoginRefusal uint8

// Login refusals.
const (
	// RefusedNone: the attempt was admitted.
	RefusedNone LoginRefusal = iota
	// RefusedClient: the account's bucket with this client is empty. The
	// client is the one looping.
	RefusedClient
	// RefusedAccount: no tier the client may use has a token.
	RefusedAccount
)

// LoginVerdict is the answer of CheckLogin.
type LoginVerdict struct {
	// Allowed reports whether the attempt may check its password.
	Allowed bool
	// Tier is the tier an allowed attempt was charged to; pass it to
	// SettleLogin.
	Tier LoginTier
	// Refused names the limit that refused a refused attempt.
	Refused LoginRefusal
	// RetryAfter, when refused, is when this client could next be admitted
	// if nobody else spent a token meanwhile; always > 0.
	RetryAfter time.Duration
}

// LoginOutcome is what became of an admitted attempt.
type LoginOutcome uint8

// Login outcomes.
const (
	// LoginFailed: the password was checked and did not match (or the
	// account cannot log in). The charge stays, and the client counts as
	// having failed for CleanAfter.
	LoginFailed LoginOutcome = iota + 1
	// LoginSucceeded: the charge is refunded, the client's failures for
	// the account are forgiven and it becomes known.
	LoginSucceeded
	// LoginNotChecked: the password was never checked (no bcrypt slot,
	// the client went away); the charge is refunded.
	LoginNotChecked
)

// validate reports whether o and tier are a settlement.
func (o LoginOutcome) validate(tier LoginTier) error {
	if o < LoginFailed || o > LoginNotChecked {
		return fmt.Errorf("state: unknown login outcome %d", o)
	}
	if tier < TierUser || tier > TierClean {
		return fmt.Errorf("state: settle login: tier %d was never charged", tier)
	}
	return nil
}

// The limiter is a GCRA (generic cell rate algorithm) token bucket, the same
// arithmetic in both stores: the state of a bucket is its theoretical arrival
// time (TAT), the instant it will be full again. A TAT at or before now is a
// full bucket, identical to no bucket at all, so a bucket needs storing only
// until its TAT, and refunding a token is moving the TAT back.

// take charges one token at now to the bucket tat (unix ns; 0 is full). It
// returns the new TAT, or ok false and how long until a token is there.
func take(tat, now int64, l Limit) (next int64, ok bool, retry time.Duration) {
	tat = max(tat, now)
	every := int64(l.Every)
	next = tat + every
	if allowAt := next - int64(l.Burst)*every; now < allowAt {
		return tat, false, time.Duration(allowAt - now)
	}
	return next, true, 0
}

// refund returns one token taken from the bucket tat; 0 means full.
func refund(tat, now int64, l Limit) int64 {
	if tat -= int64(l.Every); tat <= now {
		return 0
	}
	return tat
}

// accountTag is the name under which both stores keep an account's login
// buckets: "u:" or "x:" (known or not) and the account name, digested when
// it is long, holds a Redis hash-tag brace, or could be mistaken for a
// digest. It never contains '{' or '}', so in Redis "{"+tag+"}" is the hash
// tag of every key of the account and all of them land in one cluster slot.
func accountTag(k LoginKey) string {
	kind := "x:"
	if k.Known {
		kind = "u:"
	}
	return kind + tagText(k.Account)
}
