package state

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/authn/state/statetest"
)

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the Redis Cluster slot of key (CLUSTER KEYSLOT).
func keySlot(key string) int { return int(crc16(hashTag(key)) & 16383) }

func TestKeySlot(t *testing.T) {
	// Vectors from the Redis Cluster specification and CLUSTER KEYSLOT.
	if got := crc16("123456789"); got != 0x31c3 {
		t.Fatalf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{
		"foo": 12182, "somekey": 11058, "{user1000}.following": 3443, "{user1000}.followers": 3443,
		"foo{}{bar}": 8363, "foo{{bar}}zap": 4015, "foo{bar}{zap}": 5061,
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestRedisKeyLayout pins the name of every kind of key: they are
// documented, and a rename would orphan the records a running deployment
// holds.
func TestRedisKeyLayout(t *testing.T) {
	r := &Redis{prefix: DefaultKeyPrefix, legacy: true}
	long := strings.Repeat("x", 200)
	digest := tagText(long)
	tests := []struct {
		name, got, want string
	}{
		{"family", r.familyKey("f1"), "authgate:fam:{f1}"},
		{"revoked token", r.revokedKey("j1"), "authgate:rev:{j1}"},
		{"not before", r.notBeforeKey("alice"), "authgate:nb:{alice}"},
		{"bucket", r.bucketKey("refresh:ip", "192.0.2.1"), "authgate:rl:refresh:ip:{192.0.2.1}"},
		{"login account", r.loginKeys(LoginKey{Account: "alice", Known: true, Client: "c"})[1], "authgate:login:a:{u:alice}"},
		{"login pair", r.loginKeys(LoginKey{Account: "alice", Known: false, Client: "2001:db8::/64"})[0], "authgate:login:c:{x:alice}:2001:db8::/64"},
		{"brace in id", r.familyKey("a{b}"), "authgate:fam:{" + tagText("a{b}") + "}"},
		{"long id", r.revokedKey(long), "authgate:rev:{" + digest + "}"},
		{"empty id", r.revokedKey(""), "authgate:rev:{" + tagText("") + "}"},
		{"legacy family", r.legacyKey(kindFamily, "f1"), "authgate:fam:f1"},
		{"legacy long id", r.legacyKey(kindRevoked, long), "authgate:rev:" + boundKey(long)},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: key = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	if !strings.HasPrefix(digest, "sha256:") || strings.ContainsAny(digest, "{}") {
		t.Errorf("tagText(long) = %q, want a brace-free digest", digest)
	}
	for _, id := range []string{"", "a{b", "}", "{x}", "sha256:abc", long} {
		if tag := tagText(id); tag == "" || strings.ContainsAny(tag, "{}") || tag == id {
			t.Errorf("tagText(%q) = %q, want a non-empty brace-free digest", id, tag)
		}
	}
	r.legacy = false
	if got := r.familyKeys("f1"); len(got) != 1 {
		t.Errorf("familyKeys on a cluster = %q, want the tagged key alone", got)
	}
}

// scriptRecorder is a go-redis hook that records the keys of every script
// call and every other command.
type scriptRecorder struct {
	mu      sync.Mutex
	scripts [][]string // keys of each EVAL/EVALSHA
	others  [][]any    // arguments of other commands
}

func (h *scriptRecorder) record(cmd redis.Cmder) {
	args := cmd.Args()
	name := strings.ToLower(fmt.Sprint(args[0]))
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "eval" && name != "evalsha" {
		h.others = append(h.others, args)
		return
	}
	n, _ := strconv.Atoi(fmt.Sprint(args[2]))
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprint(args[3+i])
	}
	h.scripts = append(h.scripts, keys)
}

func (h *scriptRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(cmd)
		return next(ctx, cmd)
	}
}
func (h *scriptRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.record(c)
		}
		return next(ctx, cmds)
	}
}

// allOps runs every Store operation on s with ids that include braces and
// long names, and fails on any error.
func allOps(t *testing.T, s Store, exp time.Time) {
	t.Helper()
	ctx := context.Background()
	l := Limit{Every: time.Second, Burst: 100}
	ll := testLogin()
	long := strings.Repeat("y", 300)
	for i, id := range []string{"plain", "a{b}c", "{", long} {
		fam, jti := fmt.Sprintf("fam-%d-%s", i, id), fmt.Sprintf("jti-%d-%s", i, id)
		mustNil(t, "StartFamily", s.StartFamily(ctx, fam, jti+"0", exp))
		mustNil(t, "Rotate", s.Rotate(ctx, fam, jti+"0", jti+"1", exp))
		mustIs(t, "Rotate(reused)", s.Rotate(ctx, fam, jti+"0", jti+"2", exp), ErrReuse)
		mustNil(t, "RevokeFamily", s.RevokeFamily(ctx, fam, exp))
		mustNil(t, "Revoke", s.Revoke(ctx, jti, exp))
		if _, err := s.IsRevoked(ctx, jti); err != nil {
			t.Fatalf("IsRevoked = %v", err)
		}
		if _, err := s.AccessRevoked(ctx, jti, fam); err != nil {
			t.Fatalf("AccessRevoked = %v", err)
		}
		if _, _, err := s.Allow(ctx, "t:scope", id, l); err != nil {
			t.Fatalf("Allow = %v", err)
		}
		for _, known := range []bool{true, false} {
			k := LoginKey{Account: id, Known: known, Client: "2001:db8::/64"}
			v, err := s.CheckLogin(ctx, k, ll)
			if err != nil || !v.Allowed {
				t.Fatalf("CheckLogin(%+v) = %+v, %v", k, v, err)
			}
			mustNil(t, "SettleLogin", s.SettleLogin(ctx, k, ll, v.Tier, LoginSucceeded))
		}
	}
	at := map[string]time.Time{}
	var subjects []string
	for i := range 20 {
		s := fmt.Sprintf("user-%d{x}", i)
		at[s] = time.Now()
		subjects = append(subjects, s)
	}
	mustNil(t, "RaiseNotBefore", s.RaiseNotBefore(ctx, at, time.Hour))
	got, err := s.NotBefore(ctx, subjects)
	if err != nil || len(got) != len(subjects) {
		t.Fatalf("NotBefore = %d records, %v; want %d", len(got), err, len(subjects))
	}
	mustNil(t, "Ping", s.Ping(ctx))
}

// checkScriptSlots fails unless every recorded script call's keys share
// one cluster slot, and reports how many calls it checked.
func checkScriptSlots(t *testing.T, rec *scriptRecorder) int {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, keys := range rec.scripts {
		if len(keys) == 0 {
			t.Errorf("a script ran without keys: a cluster could route it anywhere")
			continue
		}
		for _, k := range keys[1:] {
			if keySlot(k) != keySlot(keys[0]) {
				t.Errorf("one script call touches %q (slot %d) and %q (slot %d)", keys[0], keySlot(keys[0]), k, keySlot(k))
			}
		}
	}
	return len(rec.scripts)
}

// TestRedisScriptKeysShareOneSlot runs every operation with the layout a
// cluster gets and checks that each script call's keys share one slot, so
// the scripts run on Redis Cluster unchanged (no CROSSSLOT).
func TestRedisScriptKeysShareOneSlot(t *testing.T) {
	srv := statetest.StartServer(t)
	s := newRedis(t, srv.URL(0), "slots:", nil)
	s.legacy = false // as on a cluster: no fallback to untagged names
	rec := &scriptRecorder{}
	s.client.AddHook(rec)
	allOps(t, s, time.Now().Add(time.Hour))
	n := checkScriptSlots(t, rec)
	// Every script must have been seen: start, rotate, settle, revoke,
	// raise, allow, login check and settle.
	if n < 8*4 {
		t.Errorf("%d script calls recorded, want every operation's", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Other commands take one key each: a multi-key MGET, DEL or EXISTS
	// fails with CROSSSLOT on a cluster.
	for _, args := range rec.others {
		switch name := strings.ToLower(fmt.Sprint(args[0])); name {
		case "get", "set", "exists", "hexists", "pttl":
			if name != "set" && len(args) != 2+boolInt(name == "hexists") {
				t.Errorf("%v: want one key", args)
			}
		case "ping", "hello", "client", "wait", "cluster":
		default:
			t.Errorf("unexpected command %v", args)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
