-- One UsageStore.fetch, atomically (every replica runs the same script).
--
-- KEYS: for each distinct rate-limited key, its hit set (a sorted set of
--       request ids scored by time in ms) then its horizon (the longest window
--       ever asked for that key, in ms); then for each budget fact, its spend
--       counter and the reservation set of its key (members 'id|amount' scored
--       by their expiry in ms); then, when reserving, the reservation's hash
--       followed by the reservation set of each of its keys.
-- ARGV: [1] now in ms, or '' to take the Redis server's clock
--       [2] '1' to record this request once per rate key, '0' for a dry run
--       [3] a token unique to this call (makes the request's member unique)
--       [4] the number of rate keys, then for each: its number of windows and
--           the windows in ms;
--       then the number of budget facts; then '' (no reservation) or the
--       reservation: its id, amount, expiry in ms, how long it is remembered
--       after expiry (ms), its keys as JSON, and the number of its keys.
-- Returns: for each rate key, its count in each window (this request included
--          when recorded), then for each budget fact its settled spend plus the
--          open reservations of its key, before this call's reservation, as a
--          string.

local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
local now_ms = tonumber(now)
local record = ARGV[2] == '1'
local member = now .. ':' .. ARGV[3]
local nrate = tonumber(ARGV[4])
local out = {}
local a = 5

for i = 1, nrate do
  local hits, horizon_key = KEYS[2 * i - 1], KEYS[2 * i]
  local nwin = tonumber(ARGV[a])
  local windows = {}
  for j = 1, nwin do
    windows[j] = tonumber(ARGV[a + j])
  end
  a = a + nwin + 1
  if record then
    local longest = tonumber(redis.call('GET', horizon_key) or '0')
    for j = 1, nwin do
      longest = math.max(longest, windows[j])
    end
    redis.call('ZADD', hits, now, member)
    -- Nothing at or before now - longest is counted by any window asked for this key.
    redis.call('ZREMRANGEBYSCORE', hits, '-inf', string.format('%d', now_ms - longest))
    local ttl = string.format('%d', longest + 1000)
    redis.call('PEXPIRE', hits, ttl)
    redis.call('SET', horizon_key, string.format('%d', longest), 'PX', ttl)
  end
  for j = 1, nwin do
    out[#out + 1] = redis.call('ZCOUNT', hits, '(' .. string.format('%d', now_ms - windows[j]), '+inf')
  end
end

local nbudget = tonumber(ARGV[a])
a = a + 1
local k = 2 * nrate
for i = 1, nbudget do
  local spent = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  local held = KEYS[k + 2]
  k = k + 2
  -- An expired reservation never counts again (its hash remembers it for a late settlement).
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  for _, m in ipairs(redis.call('ZRANGE', held, 0, -1)) do
    spent = spent + tonumber(string.match(m, '|(.*)$'))
  end
  out[#out + 1] = string.format('%.17g', spent)
end

if record and ARGV[a] ~= '' then
  local id, amount, expires, grace = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local keys_json, nkeys = ARGV[a + 4], tonumber(ARGV[a + 5])
  local held_member = id .. '|' .. amount
  local hash = KEYS[k + 1]
  local open_ms = math.max(expires - now_ms, 1)
  redis.call('HSET', hash, 'member', held_member, 'keys', keys_json)
  redis.call('PEXPIRE', hash, string.format('%d', open_ms + grace))
  for i = 1, nkeys do
    local held = KEYS[k + 1 + i]
    redis.call('ZADD', held, string.format('%d', expires), held_member)
    if redis.call('PTTL', held) < open_ms + 1000 then
      redis.call('PEXPIRE', held, string.format('%d', open_ms + 1000))
    end
  end
end
return out
