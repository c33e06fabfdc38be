package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/authn/state/statetest"
)

// hashTag returns the part of key Redis Cluster hashes to pick its slot:
// the text between the first '{' and the next '}' when it is not empty,
// otherwise the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestRedisLoginKeysShareOneSlot(t *testing.T) {
	r := &Redis{prefix: DefaultKeyPrefix}
	names := []string{
		"alice", "a}b", "{alice}", "a{b", "}", "sha256:abc", strings.Repeat("x", 500),
		"ａｌｉｃｅ", "alice\x00", "",
	}
	seen := map[string]string{}
	for _, name := range names {
		for _, known := range []bool{true, false} {
			k := LoginKey{Account: name, Known: known, Client: "2001:db8::/64"}
			keys := r.loginKeys(k)
			if len(keys) != 2 {
				t.Fatalf("loginKeys(%+v) = %v, want two keys", k, keys)
			}
			tag := hashTag(keys[0])
			if tag == keys[0] || hashTag(keys[1]) != tag {
				t.Errorf("loginKeys(%q) = %q: hash tags %q and %q, want one shared tag", name, keys, tag, hashTag(keys[1]))
			}
			if prev, ok := seen[keys[1]]; ok {
				t.Errorf("accounts %q and %q share the key %q", prev, name, keys[1])
			}
			seen[keys[1]] = name
		}
	}
}

func TestNewRedisRejectsBracesInPrefix(t *testing.T) {
	for _, p := range []string{"app{1}:", "a{", "}"} {
		if r, err := NewRedis(context.Background(), RedisOptions{URL: "redis://127.0.0.1:1/0", KeyPrefix: p}); err == nil {
			r.Close()
			t.Errorf("NewRedis(KeyPrefix %q) error = nil, want an error", p)
		} else if !strings.Contains(err.Error(), "prefix") {
			t.Errorf("NewRedis(KeyPrefix %q) error = %v, want one naming the prefix", p, err)
		}
	}
}

// TestRedisLoginKeysExpire checks that every login key expires, no later
// than the longest lifetime of what it holds: a pair its bucket or its
// failure mark (CleanAfter), an account its tiers or its known clients
// (KnownFor).
func TestRedisLoginKeysExpire(t *testing.T) {
	srv := statetest.StartServer(t)
	const prefix = "lttl:"
	clk := statetest.NewClock(time.Now())
	s := newRedis(t, srv.URL(3), prefix, clk.Now)
	ctx := context.Background()
	l := testLogin()
	l.CleanAfter = 2 * time.Hour
	l.KnownFor = 5 * time.Hour
	steps := []struct {
		acct, client string
		known        bool
		o            LoginOutcome
	}{
		{"alice", "c1", true, LoginFailed},
		{"alice", "c2", true, LoginSucceeded},
		{"alice", "c3", true, LoginNotChecked},
		{"bob", "c1", true, LoginNotChecked},
		{"nobody", "c1", false, LoginFailed},
		{"nobody", "c2", false, LoginSucceeded},
	}
	for _, st := range steps {
		k := LoginKey{Account: st.acct, Known: st.known, Client: st.client}
		v, err := s.CheckLogin(ctx, k, l)
		if err != nil || !v.Allowed {
			t.Fatalf("CheckLogin(%+v) = %+v, %v", k, v, err)
		}
		mustNil(t, "SettleLogin()", s.SettleLogin(ctx, k, l, v.Tier, st.o))
	}
	bounds := map[string]time.Duration{
		// a failed pair: its failure mark
		prefix + "login:c:{u:alice}:c1": l.CleanAfter,
		// alice's account: her known client c2
		prefix + "login:a:{u:alice}": l.KnownFor,
		// nobody's account: the user tier charge of c1's failure
		prefix + "login:a:{x:nobody}":    l.User.window(),
		prefix + "login:c:{x:nobody}:c1": l.CleanAfter,
	}
	c := rawClient(t, srv.URL(3))
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		bound, ok := bounds[key]
		if !ok {
			// Refunded pairs and bob's refunded account hold nothing and
			// must be gone.
			t.Errorf("key %q exists, want only %v", key, bounds)
			continue
		}
		ttl, err := c.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > bound+time.Millisecond {
			t.Errorf("PTTL(%s) = %v, %v; want in (0, %v]", key, ttl, err, bound)
		}
		if bound >= time.Hour && ttl < bound-time.Minute {
			// A failure mark or a known client must not expire early.
			t.Errorf("PTTL(%s) = %v, want about %v", key, ttl, bound)
		}
	}
	if len(keys) != len(bounds) {
		t.Errorf("keys = %v, want %d", keys, len(bounds))
	}
}

func TestRedisLoginServerClock(t *testing.T) {
	srv := statetest.StartServer(t)
	s := newRedis(t, srv.URL(0), "", nil)
	ctx := context.Background()
	l := testLogin()
	k := LoginKey{Account: "alice", Known: true, Client: "c1"}
	for i, want := range []string{"user", "user", "client"} {
		v, err := s.CheckLogin(ctx, k, l)
		if err != nil || verdictName(v) != want {
			t.Fatalf("attempt %d: CheckLogin() = %+v, %v; want %s", i, v, err, want)
		}
		if v.Allowed {
			mustNil(t, "SettleLogin()", s.SettleLogin(ctx, k, l, v.Tier, LoginFailed))
		} else if v.RetryAfter <= 59*time.Second || v.RetryAfter > time.Minute {
			t.Errorf("attempt %d: RetryAfter = %v, want about 1m", i, v.RetryAfter)
		}
	}
}
