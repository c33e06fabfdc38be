package policy

import (
	"fmt"
	"time"
)

// RateKey says what a rule's rate limit counts by.
type RateKey uint8

// The rate-limit keys (`per:`).
const (
	// PerSubject: one bucket per caller (issuer and subject); the rule
	// must need an identity.
	PerSubject RateKey = iota + 1
	// PerKey: one bucket per API key; the rule must pin auth_methods:
	// [apikey].
	PerKey
	// PerClientIP: one bucket per client address behind trusted_proxies,
	// IPv6 by /64.
	PerClientIP
	// PerRule: one bucket for the rule, shared by every caller.
	PerRule
)

// String returns the YAML spelling: "subject", "key", "client_ip" or
// "rule".
func (k RateKey) String() string {
	switch k {
	case PerSubject:
		return "subject"
	case PerKey:
		return "key"
	case PerClientIP:
		return "client_ip"
	case PerRule:
		return "rule"
	}
	return "unknown"
}

func parseRateKey(s string) (RateKey, bool) {
	for k := PerSubject; k <= PerRule; k++ {
		if k.String() == s {
			return k, true
		}
	}
	return 0, false
}

// MaxRateWindow is the longest time a rate limit may take to refill
// (burst × every), the bound of the state stores.
const MaxRateWindow = 366 * 24 * time.Hour

// RateLimit is a rule's rate limit: a token bucket of Burst requests,
// refilled one per Every, per Per. The policy only declares it; the
// gateway enforces it for allowed requests through the state store. A
// RateLimit is immutable and shared by every Decision of its rule.
type RateLimit struct {
	RuleID string
	Per    RateKey
	Every  time.Duration
	Burst  int

	header []string // the RateLimit-Policy value, computed once
}

// PolicyHeader returns the RateLimit-Policy field value of l (IETF
// draft-ietf-httpapi-ratelimit-headers): the rule id as the policy name,
// q the burst and w the refill window in seconds, as a one-element slice
// the caller may share but must not modify.
func (l *RateLimit) PolicyHeader() []string { return l.header }

func (l *RateLimit) fillHeader() {
	window := int64((l.Window() + time.Second - 1) / time.Second)
	v := fmt.Sprintf("%q;q=%d;w=%d", l.RuleID, l.Burst, window)
	l.header = []string{v}[:1:1]
}

// Window is the time an empty bucket takes to refill completely.
func (l *RateLimit) Window() time.Duration { return time.Duration(l.Burst) * l.Every }

// String formats l as "per subject, burst 20, every 1s".
func (l *RateLimit) String() string {
	return fmt.Sprintf("per %s, burst %d, every %s", l.Per, l.Burst, l.Every)
}

// checkRateLimit returns why l is not a usable limit, or "".
func checkRateLimit(every time.Duration, burst int) string {
	switch {
	case every <= 0:
		// A zero interval is rate.Inf in x/time/rate: the limit would
		// silently be off.
		return "rate_limit.every must be a positive duration such as 1s"
	case burst < 1:
		return "rate_limit.burst must be at least 1"
	case int64(burst) > int64(MaxRateWindow/every):
		return fmt.Sprintf("rate_limit: burst %d every %s refills in more than %s", burst, every, MaxRateWindow)
	}
	return ""
}
