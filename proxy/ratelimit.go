package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/authgate/authgate/authn"
	"github.com/authgate/authgate/authn/state"
	"github.com/authgate/authgate/internal/clientip"
	"github.com/authgate/authgate/policy"
)

// RateLimitStore is what per-route rate limits need of the state store
// (state.Store implements it): one atomic token-bucket step, in the
// embedded store on one replica and in Redis across replicas.
type RateLimitStore interface {
	Allow(ctx context.Context, scope state.Scope, id string, l state.Limit) (ok bool, retryAfter time.Duration, err error)
}

// The results of a rate-limit check, a closed set for the metric.
const (
	rlAllowed    = "allowed"
	rlLimited    = "limited"
	rlStoreError = "store_error"
)

// rateScope is the state-store scope of a key kind: each kind has buckets
// of its own, so a flood of fresh client addresses never evicts a
// subject's bucket in the embedded store.
func rateScope(k policy.RateKey) state.Scope {
	switch k {
	case policy.PerSubject:
		return "route:subject"
	case policy.PerKey:
		return "route:key"
	case policy.PerClientIP:
		return "route:ip"
	}
	return "route:rule"
}

// routeLimiter enforces the rate limits the policy declares on rules.
type routeLimiter struct {
	store RateLimitStore
	log   *zap.Logger
	count *prometheus.CounterVec // nil records nothing
	// lastWarn is when a store failure was last logged (unix ns), so an
	// outage is logged every 10 s, not on every request.
	lastWarn atomic.Int64
}

func newRateLimitMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_rate_limit_total",
		Help: "Rate-limit checks of allowed requests by rule (bounded by the policy) and result: allowed, limited, or store_error (let through: limits fail open).",
	}, []string{"rule_id", "result"})
	reg.MustRegister(c)
	return c
}

// bucketID returns the bucket of the request for l, or ok false when the
// caller has nothing to count by (which the policy compiler rules out).
func bucketID(l *policy.RateLimit, p authn.Principal, client netip.Addr) (string, bool) {
	var buf [256]byte
	b := append(buf[:0], l.RuleID...)
	b = append(b, ' ')
	switch l.Per {
	case policy.PerSubject:
		if !p.Authenticated() {
			return "", false
		}
		// Two issuers may use one subject; they are different callers.
		b = append(b, p.Method...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(p.Issuer)), 10)
		b = append(b, ':')
		b = append(b, p.Issuer...)
		b = append(b, ' ')
		b = append(b, p.Subject...)
	case policy.PerKey:
		if p.KeyName == "" {
			return "", false
		}
		b = append(b, p.KeyName...)
	case policy.PerClientIP:
		if !client.IsValid() {
			return "", false
		}
		b = clientBucket(client).AppendTo(b)
	}
	if bytes.ContainsAny(b, "{}") {
		// A Redis hash tag in a subject must not pick the key's slot.
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:]), true
	}
	return string(b), true
}

// take charges one request to its bucket. It returns the 429 to answer,
// or nil to let the request through, setting the RateLimit-Policy header
// either way. A store that fails or is missing lets the request through
// (it was authorized already; limits protect capacity, not access), counts
// store_error and logs. The store bounds its own call (the Redis
// operation timeout).
func (rl *routeLimiter) take(r *http.Request, h http.Header, l *policy.RateLimit, p authn.Principal, trusted clientip.Trusted) *Error {
	h["Ratelimit-Policy"] = l.PolicyHeader()
	var client netip.Addr
	if l.Per == policy.PerClientIP {
		client = trusted.ClientIP(r)
	}
	id, ok := bucketID(l, p, client)
	if !ok {
		rl.record(l.RuleID, rlStoreError)
		return nil
	}
	if rl.store == nil {
		rl.failed(l.RuleID, errNoStore)
		return nil
	}
	allowed, retry, err := rl.store.Allow(r.Context(), rateScope(l.Per), id, state.Limit{Every: l.Every, Burst: l.Burst})
	if err != nil {
		rl.failed(l.RuleID, err)
		return nil
	}
	if allowed {
		rl.record(l.RuleID, rlAllowed)
		return nil
	}
	rl.record(l.RuleID, rlLimited)
	secs := int64((retry + time.Second - 1) / time.Second)
	h.Set("RateLimit", strconv.Quote(l.RuleID)+";r=0;t="+strconv.FormatInt(secs, 10))
	return &Error{Code: http.StatusTooManyRequests, Msg: "rate limit exceeded", RetryAfter: retry}
}

func (rl *routeLimiter) record(ruleID, result string) {
	if rl.count != nil {
		rl.count.WithLabelValues(ruleID, result).Inc()
	}
}

func (rl *routeLimiter) failed(ruleID string, err error) {
	rl.record(ruleID, rlStoreError)
	now := time.Now().UnixNano()
	if last := rl.lastWarn.Load(); now-last < int64(10*time.Second) || !rl.lastWarn.CompareAndSwap(last, now) {
		return
	}
	rl.log.Warn("rate-limit store unavailable, letting requests through", zap.String("rule_id", ruleID), zap.Error(err))
}

// errNoStore is the failure when rate limits are declared but the gateway
// was given no store.
var errNoStore = errors.New("proxy: no rate-limit store configured")
