// Package state holds the gateway's shared mutable security state: login and
// request rate-limit buckets, refresh-token families, the token revocation
// list, per-user "not before" instants that end every token issued
// before a user was disabled or deleted, and browser sessions.
//
// Two implementations sit behind the Store interface: Memory, embedded and
// meant for a single replica (optionally persisted to a file), and Redis,
// shared by every replica. Both fail closed: a backend failure is reported as
// ErrUnavailable and never as "allowed" or "not revoked".
package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Errors returned by every Store.
var (
	// ErrReuse reports that a refresh token that was already rotated was
	// presented again. The family has been revoked in the same atomic step.
	// Exactly one caller ever receives ErrReuse for a family.
	ErrReuse = errors.New("state: refresh token reused")
	// ErrRevoked reports that a refresh-token family was revoked (logout or
	// an earlier reuse), or is unknown or expired.
	ErrRevoked = errors.New("state: refresh token family revoked")
	// ErrUnavailable wraps every backend failure (timeouts, refused
	// connections, a closed store, a failed state-file write). Callers answer
	// 503 with Retry-After and must never skip the check.
	ErrUnavailable = errors.New("state: store unavailable")
)

// MaxWindow is the longest time a Limit may take to refill completely
// (Burst × Every). Longer windows are rejected: they would overflow the
// stores' arithmetic, and an overflowed window would reset the bucket on
// every call.
const MaxWindow = 366 * 24 * time.Hour

// Limit is a token bucket: Burst tokens, refilled one per Every. The zero
// value is invalid: a zero Every or a Burst below 1 is rejected by Validate
// and is never treated as "unlimited". A Limit is a value, safe to copy and
// share.
type Limit struct {
	// Every is the time it takes to refill one token.
	Every time.Duration `yaml:"every"`
	// Burst is the bucket's capacity.
	Burst int `yaml:"burst"`
}

// Validate reports whether l is a usable limit.
func (l Limit) Validate() error {
	var errs []error
	// rate.Every(0) is rate.Inf: a zero interval would silently turn the
	// limiter off, which is how brute-force protection disappears.
	if l.Every <= 0 {
		errs = append(errs, fmt.Errorf("state: limit every must be positive, got %s", l.Every))
	}
	if l.Burst < 1 {
		errs = append(errs, fmt.Errorf("state: limit burst must be at least 1, got %d", l.Burst))
	}
	if l.Every > 0 && l.Burst > 0 && int64(l.Burst) > int64(MaxWindow/l.Every) {
		errs = append(errs, fmt.Errorf("state: limit burst %d every %s refills in more than %s", l.Burst, l.Every, MaxWindow))
	}
	return errors.Join(errs...)
}

// window is the time an empty bucket takes to refill completely.
func (l Limit) window() time.Duration { return time.Duration(l.Burst) * l.Every }

// Store is the shared state behind the limiter, the refresh handler and the
// revocation check. Implementations are safe for concurrent use.
type Store interface {
	// Allow takes one token from the bucket id of scope. retryAfter > 0
	// when denied. It never waits. Scopes do not share buckets, and in a
	// bounded store one scope's traffic never evicts another's buckets.
	Allow(ctx context.Context, scope Scope, id string, l Limit) (ok bool, retryAfter time.Duration, err error)
	// LoginLimiter holds the per-account login limits.
	LoginLimiter
	// StartFamily records a new refresh-token family whose current token is
	// jti; the record expires at exp.
	StartFamily(ctx context.Context, family, jti string, exp time.Time) error
	// Rotate atomically replaces the family's current jti oldJTI with newJTI
	// (new expiry exp). It returns ErrReuse if oldJTI is not the current jti
	// (a rotated token presented again): the family is revoked in the same
	// atomic step, and exactly one caller ever gets ErrReuse for a family;
	// later callers get ErrRevoked. It returns ErrRevoked if the family was
	// revoked (logout or earlier reuse) or is unknown or expired. Any
	// ErrUnavailable means newJTI must not be handed out; the caller's
	// client keeps oldJTI and retries. A store whose answers can be lost
	// (Redis) accepts oldJTI again after a rotation whose answer never came
	// back, and answers ErrUnavailable while such a rotation may still be
	// confirmed, so that a retry is never judged reuse.
	Rotate(ctx context.Context, family, oldJTI, newJTI string, exp time.Time) error
	// RevokeFamily revokes a family until exp (idempotent).
	RevokeFamily(ctx context.Context, family string, exp time.Time) error
	// Revoke puts a single token id on the revocation list until exp.
	Revoke(ctx context.Context, jti string, exp time.Time) error
	// IsRevoked reports whether jti is on the revocation list.
	IsRevoked(ctx context.Context, jti string) (bool, error)
	// AccessRevoked reports, in one round trip, whether jti is on the
	// revocation list or the refresh-token family sid was revoked (logout
	// or reuse), so every access token of a revoked family is refused. An
	// empty sid checks jti alone. An unknown family is not revoked.
	AccessRevoked(ctx context.Context, jti, sid string) (bool, error)
	// RaiseNotBefore raises the recorded not-before instant of each
	// subject in at to at least the given instant, and keeps each record
	// until at least that instant plus keep. It never lowers a record.
	// Tokens of a subject issued before its instant are no longer valid.
	RaiseNotBefore(ctx context.Context, at map[string]time.Time, keep time.Duration) error
	// NotBefore returns the recorded not-before instants of subjects; a
	// subject without a live record is absent from the map.
	NotBefore(ctx context.Context, subjects []string) (map[string]time.Time, error)
	// SessionStore holds browser sessions.
	SessionStore
	// Ping reports the store's health (nil = healthy).
	Ping(ctx context.Context) error
	// Close releases the store's resources. Later calls fail with
	// ErrUnavailable.
	Close() error
}

// maxKeyLen bounds the length of a stored key. Limiter keys are often
// client-chosen (a username); hashing long ones keeps one request from
// pinning an arbitrary amount of memory (resource exhaustion).
const maxKeyLen = 128

// boundKey returns k, or a fixed-length digest of k when k is long.
func boundKey(k string) string {
	if len(k) <= maxKeyLen {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// unavailable wraps a backend failure of operation op in ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// errClosed is the cause reported after Close.
var errClosed = errors.New("store closed")
