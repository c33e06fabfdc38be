package state

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisScripts are the limiter's Lua scripts. Each one is a single atomic
// step, and every key one script touches shares a hash tag, so the scripts
// run unchanged on Redis Cluster.
type redisScripts struct {
	allow, loginCheck, loginSettle *redis.Script
}

func newRedisScripts() redisScripts {
	return redisScripts{
		allow:       redis.NewScript(allowSrc),
		loginCheck:  redis.NewScript(loginCheckSrc),
		loginSettle: redis.NewScript(loginSettleSrc),
	}
}

// luaNow sets now (µs) from ARGV[1], or from the server clock when it is "".
const luaNow = `
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
`

// luaTake is the GCRA step of limit.go's take, in µs: it returns the new
// TAT, or nil and the wait.
const luaTake = `
local function take(tat, every, burst)
  if tat < now then tat = now end
  local nxt = tat + every
  local allow_at = nxt - burst * every
  if now < allow_at then return nil, allow_at - now end
  return nxt, 0
end
local function num(v) return tonumber(v) or 0 end
local function fmt(v) return string.format('%.0f', v) end
local function ms(us) return math.ceil(us / 1000) end
`

// allowSrc is a GCRA token bucket. The stored value is the theoretical
// arrival time (TAT) in microseconds: the instant the bucket would be full
// again. A request is allowed when, after adding one interval, the TAT is at
// most Burst intervals ahead of now.
//
// KEYS[1] bucket, KEYS[2] (optional) its name in the previous release's
// layout, whose debt still counts; ARGV[1] now in µs, or "" for the server
// clock; ARGV[2] interval in µs; ARGV[3] burst. Returns {allowed,
// retry_after_µs}.
const allowSrc = luaNow + luaTake + `
local tat = num(redis.call('GET', KEYS[1]))
if #KEYS > 1 then tat = math.max(tat, num(redis.call('GET', KEYS[2]))) end
local nxt, wait = take(tat, tonumber(ARGV[2]), tonumber(ARGV[3]))
if not nxt then return {0, wait} end
local ttl = ms(nxt - now)
if ttl < 1 then ttl = 1 end
redis.call('SET', KEYS[1], fmt(nxt), 'PX', ttl)
return {1, 0}
`

// loginCheckSrc is decideLogin (memory_limit.go) on Redis.
//
// KEYS[1] pair hash {t = TAT, f = last failure}; KEYS[2] account hash
// {u, k, c = tier TATs, n:<client> = known until}. ARGV[1] now; ARGV[2]
// client; ARGV[3..10] every and burst of PerClient, User, Known, Clean;
// ARGV[11] CleanAfter; times in µs. Returns {allowed, tier, refused,
// retry_µs}.
const loginCheckSrc = luaNow + luaTake + `
local p = redis.call('HMGET', KEYS[1], 't', 'f')
local ptat, pfail = num(p[1]), num(p[2])
local pnext, pwait = take(ptat, tonumber(ARGV[3]), tonumber(ARGV[4]))
if not pnext then return {0, 0, 1, pwait} end
local clean_after = tonumber(ARGV[11])
local clean_at = ptat
if pfail > 0 and pfail + clean_after > clean_at then clean_at = pfail + clean_after end
local a = redis.call('HMGET', KEYS[2], 'u', 'k', 'c', 'n:' .. ARGV[2])
local known = num(a[4]) > now
local tiers = {{1, 'u', 5, a[1]}, {2, 'k', 7, a[2]}, {3, 'c', 9, a[3]}}
local wait = -1
for _, t in ipairs(tiers) do
  if t[1] ~= 2 or known then
    local not_before = 0
    if t[1] == 3 then not_before = clean_at - now end
    local nxt, r = take(num(t[4]), tonumber(ARGV[t[3]]), tonumber(ARGV[t[3] + 1]))
    if nxt and not_before <= 0 then
      local pu = pnext
      if pfail > 0 and pfail + clean_after > pu then pu = pfail + clean_after end
      redis.call('HSET', KEYS[1], 't', fmt(pnext))
      redis.call('PEXPIRE', KEYS[1], ms(pu - now))
      redis.call('HSET', KEYS[2], t[2], fmt(nxt))
      local need = ms(nxt - now)
      if redis.call('PTTL', KEYS[2]) < need then redis.call('PEXPIRE', KEYS[2], need) end
      return {1, t[1], 0, 0}
    end
    if not_before > r then r = not_before end
    if wait < 0 or r < wait then wait = r end
  end
end
return {0, 0, 2, wait}
`

// loginSettleSrc is settleLogin (memory_limit.go) on Redis.
//
// KEYS as loginCheckSrc. ARGV[1] now; ARGV[2] client; ARGV[3] outcome
// (1 failed, 2 succeeded, 3 not checked); ARGV[4] tier field; ARGV[5]
// PerClient every; ARGV[6] tier every; ARGV[7] CleanAfter; ARGV[8] KnownFor,
// or "" when the account does not exist; ARGV[9] MaxKnownClients; times in
// µs.
const loginSettleSrc = luaNow + luaTake + `
local clean_after = tonumber(ARGV[7])
local p = redis.call('HMGET', KEYS[1], 't', 'f')
local ptat, pfail = num(p[1]), num(p[2])
if ARGV[3] == '1' then
  pfail = now
else
  ptat = ptat - tonumber(ARGV[5])
  if ptat <= now then ptat = 0 end
  local at = num(redis.call('HGET', KEYS[2], ARGV[4])) - tonumber(ARGV[6])
  if at > now then
    redis.call('HSET', KEYS[2], ARGV[4], fmt(at))
  else
    redis.call('HDEL', KEYS[2], ARGV[4])
  end
  if ARGV[3] == '2' then
    pfail = 0
    if ARGV[8] ~= '' then
      local known_until = now + tonumber(ARGV[8])
      redis.call('HSET', KEYS[2], 'n:' .. ARGV[2], fmt(known_until))
      local all = redis.call('HGETALL', KEYS[2])
      local clients = {}
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, 2) == 'n:' then
          local u = num(all[i + 1])
          if u <= now then
            redis.call('HDEL', KEYS[2], all[i])
          else
            table.insert(clients, {all[i], u})
          end
        end
      end
      table.sort(clients, function(x, y) return x[2] > y[2] end)
      for i = tonumber(ARGV[9]) + 1, #clients do redis.call('HDEL', KEYS[2], clients[i][1]) end
      local need = ms(known_until - now)
      if redis.call('PTTL', KEYS[2]) < need then redis.call('PEXPIRE', KEYS[2], need) end
    end
  end
end
local pu = ptat
if pfail > 0 and pfail + clean_after > pu then pu = pfail + clean_after end
if pu <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 't', fmt(ptat), 'f', fmt(pfail))
  redis.call('PEXPIRE', KEYS[1], ms(pu - now))
end
return 0
`

// nowArg is ARGV[1] of every limiter script: the injected clock in µs, or ""
// for the server's clock.
func (r *Redis) nowArg() string {
	if r.now == nil {
		return ""
	}
	return strconv.FormatInt(r.now().UnixMicro(), 10)
}

// micros converts d to whole µs, at least 1.
func micros(d time.Duration) int64 { return max(d.Microseconds(), 1) }

// Allow implements Store.
func (r *Redis) Allow(ctx context.Context, scope Scope, id string, l Limit) (bool, time.Duration, error) {
	if err := errors.Join(scope.validate(), l.Validate()); err != nil {
		return false, 0, err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	keys := r.withLegacy(r.bucketKey(scope, id), kindBucket+":"+string(scope), id)
	res, err := r.scripts.allow.Run(ctx, r.client, keys, r.nowArg(), micros(l.Every), l.Burst).Int64Slice()
	if err != nil {
		return false, 0, unavailable("allow", err)
	}
	if len(res) != 2 {
		return false, 0, unavailable("allow", errors.New("unexpected script reply"))
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, max(time.Duration(res[1])*time.Microsecond, time.Microsecond), nil
}

// loginKeys returns the pair and account keys of k: "login:c:{tag}:client"
// and "login:a:{tag}". Both carry the hash tag {accountTag}, so a script on
// them stays in one cluster slot.
func (r *Redis) loginKeys(k LoginKey) []string {
	tag := keyTag(accountTag(k))
	return []string{r.key(kindLoginPair, tag, k.Client), r.key(kindLoginAcct, tag)}
}

// CheckLogin implements LoginLimiter.
func (r *Redis) CheckLogin(ctx context.Context, k LoginKey, l LoginLimits) (LoginVerdict, error) {
	if err := errors.Join(k.validate(), l.Validate()); err != nil {
		return LoginVerdict{}, err
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	res, err := r.scripts.loginCheck.Run(ctx, r.client, r.loginKeys(k), r.nowArg(), k.Client,
		micros(l.PerClient.Every), l.PerClient.Burst, micros(l.User.Every), l.User.Burst,
		micros(l.Known.Every), l.Known.Burst, micros(l.Clean.Every), l.Clean.Burst,
		micros(l.CleanAfter)).Int64Slice()
	if err != nil {
		return LoginVerdict{}, unavailable("check login", err)
	}
	if len(res) != 4 || res[1] < int64(TierNone) || res[1] > int64(TierClean) ||
		res[2] < int64(RefusedNone) || res[2] > int64(RefusedAccount) {
		return LoginVerdict{}, unavailable("check login", errors.New("unexpected script reply"))
	}
	if res[0] == 1 {
		return LoginVerdict{Allowed: true, Tier: LoginTier(res[1])}, nil
	}
	return LoginVerdict{Refused: LoginRefusal(res[2]),
		RetryAfter: max(time.Duration(res[3])*time.Microsecond, time.Microsecond)}, nil
}

// field is the account hash field of tier t's TAT.
func (t LoginTier) field() string {
	switch t {
	case TierKnown:
		return "k"
	case TierClean:
		return "c"
	}
	return "u"
}

// SettleLogin implements LoginLimiter.
func (r *Redis) SettleLogin(ctx context.Context, k LoginKey, l LoginLimits, tier LoginTier, o LoginOutcome) error {
	if err := errors.Join(k.validate(), l.Validate(), o.validate(tier)); err != nil {
		return err
	}
	knownFor := ""
	if k.Known {
		knownFor = strconv.FormatInt(micros(l.KnownFor), 10)
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	err := r.scripts.loginSettle.Run(ctx, r.client, r.loginKeys(k), r.nowArg(), k.Client, int(o),
		tier.field(), micros(l.PerClient.Every), micros(l.tier(tier).Every), micros(l.CleanAfter),
		knownFor, MaxKnownClients).Err()
	if err != nil {
		return unavailable("settle login", err)
	}
	return nil
}
