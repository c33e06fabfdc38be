package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// errKeysUnavailable marks a failure to obtain usable keys; Verify turns it
// into authn.ErrUnavailable.
var errKeysUnavailable = errors.New("jwks: keys unavailable")

// keyState is an immutable snapshot of an issuer's keys.
type keyState struct {
	set       *keySet
	fetched   time.Time // last successful fetch
	refreshAt time.Time // when the set is due for a refresh
}

// keySource fetches and caches the JWKS of one issuer. It is safe for
// concurrent use.
type keySource struct {
	issuer    string
	discovery bool
	jwksURI   string
	client    *http.Client
	cfg       CacheConfig
	now       func() time.Time
	log       *zap.Logger
	metrics   *metrics
	baseCtx   context.Context

	state    atomic.Pointer[keyState]
	sf       singleflight.Group
	fetching atomic.Bool

	mu           sync.Mutex
	discovered   string        // jwks_uri found through discovery
	nextAttempt  time.Time     // no refresh of a due or missing set before this (after a failure)
	lastKidFetch time.Time     // last refetch triggered by an unknown kid
	kidWait      chan struct{} // closed when the running unknown-kid refetch ends
}

// current returns usable keys, refreshing them first when they are due. A
// failed refresh keeps serving the previous keys until MaxStale after the
// last success (stale-if-error); after that every token is denied.
func (s *keySource) current(ctx context.Context) (*keyState, error) {
	now := s.now()
	st := s.state.Load()
	if st == nil || !now.Before(st.refreshAt) {
		if s.mayRefresh(now) {
			span := startFetchSpan(ctx, s.issuer, "due")
			fresh, err := s.refresh(ctx)
			endFetchSpan(span, err)
			if err == nil {
				st = fresh
			} else if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", errKeysUnavailable, ctx.Err())
			}
		}
		if st == nil {
			st = s.state.Load()
		}
	}
	if st == nil {
		return nil, fmt.Errorf("%w: no key set fetched yet", errKeysUnavailable)
	}
	if now.Sub(st.fetched) > s.cfg.MaxStale {
		return nil, fmt.Errorf("%w: key set older than max_stale", errKeysUnavailable)
	}
	return st, nil
}

// mayRefresh reports whether a request may start (or join) a refresh of a
// due or missing key set. After a failure new attempts wait for the
// cooldown so that an outage does not turn every request into a fetch.
func (s *keySource) mayRefresh(now time.Time) bool {
	if s.fetching.Load() {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(s.nextAttempt)
}

// refetchForKid is called when a token names a kid missing from the keys
// it was checked against, and returns the newest key set to look it up in.
// At most one refetch starts per UnknownKidCooldown, so a flood of tokens
// with random kids cannot hammer the provider (amplification DoS) or stall
// the gateway; requests arriving while that refetch runs wait for it
// instead of being rejected, so a genuine key rotation costs one fetch.
func (s *keySource) refetchForKid(ctx context.Context, now time.Time) *keyState {
	s.mu.Lock()
	if wait := s.kidWait; wait != nil {
		s.mu.Unlock()
		span := startFetchSpan(ctx, s.issuer, "unknown_kid")
		select {
		case <-wait:
		case <-ctx.Done():
		}
		endFetchSpan(span, ctx.Err())
		return s.state.Load()
	}
	if !s.lastKidFetch.IsZero() && now.Sub(s.lastKidFetch) < s.cfg.UnknownKidCooldown {
		s.mu.Unlock()
		return s.state.Load()
	}
	wait := make(chan struct{})
	s.kidWait = wait
	s.lastKidFetch = now
	s.mu.Unlock()

	span := startFetchSpan(ctx, s.issuer, "unknown_kid")
	_, err := s.refresh(ctx) // a failure keeps the previous keys
	endFetchSpan(span, err)

	s.mu.Lock()
	s.kidWait = nil
	close(wait)
	s.mu.Unlock()
	return s.state.Load()
}

// refresh fetches the key set, coalescing concurrent callers into one
// request. The fetch itself is bound to the Set's lifetime, not to ctx, so
// a caller that gives up does not abort it for the others.
func (s *keySource) refresh(ctx context.Context) (*keyState, error) {
	ch := s.sf.DoChan("fetch", func() (any, error) {
		s.fetching.Store(true)
		defer s.fetching.Store(false)
		return s.fetch()
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*keyState), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch performs discovery (when configured) and the JWKS request, and
// stores the result on success.
func (s *keySource) fetch() (*keyState, error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.cfg.FetchTimeout)
	defer cancel()
	st, err := s.doFetch(ctx)
	now := s.now()
	if err != nil {
		s.mu.Lock()
		s.nextAttempt = now.Add(s.cfg.UnknownKidCooldown)
		if s.discovery {
			s.discovered = "" // discover again next time: the URI may have moved
		}
		s.mu.Unlock()
		s.metrics.fetched(s.issuer, "error")
		s.log.Warn("jwks fetch failed", zap.String("issuer", s.issuer), zap.Error(err))
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, err)
	}
	s.state.Store(st)
	s.mu.Lock()
	s.nextAttempt = time.Time{}
	s.mu.Unlock()
	s.metrics.fetched(s.issuer, "ok")
	s.metrics.setKeys(s.issuer, len(st.set.all))
	return st, nil
}

func (s *keySource) doFetch(ctx context.Context) (*keyState, error) {
	uri, err := s.keysURI(ctx)
	if err != nil {
		return nil, err
	}
	body, hdr, err := s.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	set, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, err
	}
	if skipped > 0 {
		s.log.Debug("jwks keys skipped", zap.String("issuer", s.issuer), zap.Int("skipped", skipped))
	}
	now := s.now()
	return &keyState{
		set:       set,
		fetched:   now,
		refreshAt: now.Add(s.refreshInterval(hdr.Get("Cache-Control"))),
	}, nil
}

// keysURI returns the configured JWKS URI or the one found by discovery.
func (s *keySource) keysURI(ctx context.Context) (string, error) {
	if !s.discovery {
		return s.jwksURI, nil
	}
	s.mu.Lock()
	uri := s.discovered
	s.mu.Unlock()
	if uri != "" {
		return uri, nil
	}
	body, _, err := s.get(ctx, strings.TrimSuffix(s.issuer, "/")+"/.well-known/openid-configuration")
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", errors.New("jwks: discovery: document is not valid JSON")
	}
	// OpenID Connect Discovery 1.0 section 4.3: the issuer in the document
	// must equal the configured one exactly, or a provider could vouch for
	// keys of another issuer (issuer mix-up).
	if doc.Issuer != s.issuer {
		return "", errors.New("jwks: discovery: issuer in document does not match")
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("jwks: discovery: jwks_uri: %w", err)
	}
	s.mu.Lock()
	s.discovered = doc.JWKSURI
	s.mu.Unlock()
	return doc.JWKSURI, nil
}

// get fetches uri, capping the body at MaxJWKSBytes.
func (s *keySource) get(ctx context.Context, uri string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("jwks: fetch: unexpected status %d", resp.StatusCode)
	}
	max := s.cfg.MaxJWKSBytes
	if resp.ContentLength > max {
		return nil, nil, fmt.Errorf("jwks: fetch: response larger than %d bytes", max)
	}
	// Read one byte more than allowed so that an oversized body is
	// detected and rejected instead of silently truncated.
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, fmt.Errorf("jwks: fetch: read body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, nil, fmt.Errorf("jwks: fetch: response larger than %d bytes", max)
	}
	return body, resp.Header, nil
}

// refreshInterval derives how long a fetched set is used from its
// Cache-Control header: max-age clamped to [MinRefresh, MaxRefresh];
// MinRefresh when absent, no-cache or no-store.
func (s *keySource) refreshInterval(cc string) time.Duration {
	d := s.cfg.MinRefresh
	for _, dir := range strings.Split(cc, ",") {
		dir = strings.TrimSpace(strings.ToLower(dir))
		if v, ok := strings.CutPrefix(dir, "max-age="); ok {
			if n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64); err == nil && n >= 0 {
				if n > int64(s.cfg.MaxRefresh/time.Second) {
					d = s.cfg.MaxRefresh
				} else {
					d = time.Duration(n) * time.Second
				}
			}
		}
		if dir == "no-cache" || dir == "no-store" {
			return s.cfg.MinRefresh
		}
	}
	return min(max(d, s.cfg.MinRefresh), s.cfg.MaxRefresh)
}

// run refreshes the key set in the background until ctx ends: at once,
// then when the set is due, retrying failures with a capped backoff.
func (s *keySource) run(ctx context.Context, startedAt time.Time) {
	backoff := time.Second
	graceLogged := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var wait time.Duration
		st, err := s.refresh(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if s.state.Load() == nil && !graceLogged && s.now().Sub(startedAt) >= s.cfg.StartupGrace {
				graceLogged = true
				s.log.Error("jwks issuer still unavailable after startup grace; not ready",
					zap.String("issuer", s.issuer), zap.Error(err))
			}
			wait = backoff
			backoff = min(backoff*2, s.cfg.UnknownKidCooldown)
		} else {
			backoff = time.Second
			wait = st.refreshAt.Sub(s.now())
		}
		timer.Reset(max(wait, time.Second))
	}
}

// ready reports whether the issuer has keys that are not past MaxStale.
func (s *keySource) ready() bool {
	st := s.state.Load()
	return st != nil && s.now().Sub(st.fetched) <= s.cfg.MaxStale
}
