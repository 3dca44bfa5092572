"""The Lua scripts of `RedisStore`: each decision that must read and write at once, atomic in
Redis and one round trip.

Times are the store's clock in seconds (`ARGV` "now"), so every replica must share the wall
clock (NTP); numbers go back as strings (Lua numbers become integers in Redis replies).
Circuit states are `CircuitState` values: 0 closed, 1 half-open, 2 open. Scripts touch only the
keys they are given, but for `REMEMBER`, which deletes the owners its bound pushes out: a
single Redis (or a primary and its replicas), not Redis Cluster.
"""

from __future__ import annotations

from gateway.state.redis_link import Script

__all__ = ["ADMIT", "CHARGE", "CLAIM", "REMEMBER", "VERDICT"]

#: KEYS: the key's buckets (hash: r, ra, t, ta), its leases (sorted set: id -> expiry).
#: ARGV: now, lease id, requests per minute, max streams, tokens per minute (0: no such
#: limit), the lease's expiry, the keys' lifetime (ms).
#: Answer: {0, requests left} admitted; {1, wait, requests left} requests per minute;
#: {2} streams in flight; {3, wait, requests left} tokens per minute.
ADMIT = Script(
    "admit",
    """
local now = tonumber(ARGV[1])
local rpm, streams, tpm = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'r', 'ra', 't', 'ta')
local r, t = 0, 0
if rpm > 0 then
  r = math.min(rpm, (tonumber(h[1]) or rpm) + math.max(0, now - (tonumber(h[2]) or now)) * rpm / 60)
end
if tpm > 0 then
  t = math.min(tpm, (tonumber(h[3]) or tpm) + math.max(0, now - (tonumber(h[4]) or now)) * tpm / 60)
  if t < 1 then return {3, tostring((1 - t) * 60 / tpm), tostring(r)} end
end
if rpm > 0 and r < 1 then return {1, tostring((1 - r) * 60 / rpm), tostring(r)} end
if streams > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= streams then return {2} end
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
if rpm > 0 then
  r = r - 1
  redis.call('HSET', KEYS[1], 'r', tostring(r), 'ra', ARGV[1])
end
if tpm > 0 then redis.call('HSET', KEYS[1], 't', tostring(t), 'ta', ARGV[1]) end
if rpm > 0 or tpm > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
return {0, tostring(r)}
""",
)

#: KEYS: the key's buckets. ARGV: now, tokens per minute, tokens charged. The hash lives until
#: its budget would be full again.
CHARGE = Script(
    "charge",
    """
local now, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 't', 'ta')
local t, at = tonumber(h[1]) or tpm, tonumber(h[2]) or now
t = math.min(tpm, t + math.max(0, now - at) * tpm / 60) - tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 't', tostring(t), 'ta', ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(((tpm - t) * 60 / tpm + 60) * 1000))
return 1
""",
)

#: KEYS: the circuit (hash: s, f, o), its probe token. ARGV: now, cooldown, the probe token's
#: lifetime (ms), this replica's id. Answer: {0 admitted | 1 the probe | 2 refused, s, f, o}.
CLAIM = Script(
    "circuit_claim",
    """
local h = redis.call('HMGET', KEYS[1], 's', 'f', 'o')
local s, f, o = tonumber(h[1]) or 0, tonumber(h[2]) or 0, h[3] or '0'
if s == 0 then return {0, s, f, o} end
if s == 2 and tonumber(ARGV[1]) < tonumber(o) + tonumber(ARGV[2]) then return {2, s, f, o} end
if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[3]) then
  redis.call('HSET', KEYS[1], 's', 1)
  return {1, 1, f, o}
end
return {2, s, f, o}
""",
)

#: KEYS: the circuit, its probe token. ARGV: the verdict (answered, succeeded, failed,
#: abandoned), now, the failures that open it (0: never), whether the call was this replica's
#: probe (1/0), this replica's id. Answer: {s, f, o} after it.
VERDICT = Script(
    "circuit_verdict",
    """
local h = redis.call('HMGET', KEYS[1], 's', 'f', 'o')
local s, f, o = tonumber(h[1]) or 0, tonumber(h[2]) or 0, h[3] or '0'
local verdict, limit = ARGV[1], tonumber(ARGV[3])
if verdict == 'answered' then
  if s == 1 then s = 0; redis.call('DEL', KEYS[2]) end
elseif verdict == 'succeeded' then
  f = 0
  if s ~= 0 then s = 0; redis.call('DEL', KEYS[2]) end
elseif verdict == 'failed' then
  f = f + 1
  if s == 1 or (s == 0 and limit > 0 and f >= limit) then
    s, o = 2, ARGV[2]
    redis.call('DEL', KEYS[2])
  end
elseif ARGV[4] == '1' and redis.call('GET', KEYS[2]) == ARGV[5] then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 's', s, 'f', f, 'o', o)
return {s, f, o}
""",
)

#: KEYS: the owner's key, the index (sorted set: id -> order remembered), the order counter.
#: ARGV: the response id, the owner (JSON), its lifetime (ms), the most owners kept, the prefix
#: of owners' keys. The oldest past the bound are deleted.
REMEMBER = Script(
    "owner_remember",
    """
local seq = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('DEL', ARGV[5] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return 1
""",
)
