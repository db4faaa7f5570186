-- One UsageStore.fetch, atomically (every replica runs the same script).
--
-- KEYS: for each distinct rate-limited key, its hit set (a sorted set of
--       request ids scored by time in ms) then its horizon (the longest window
--       ever asked for that key, in ms); then the budget counters to read.
-- ARGV: [1] now in ms, or '' to take the Redis server's clock
--       [2] '1' to record this request once per rate key, '0' for a dry run
--       [3] a token unique to this call (makes the request's member unique)
--       [4] the number of rate keys, then for each: its number of windows and
--           the windows in ms.
-- Returns: for each rate key, its count in each window (this request included
--          when recorded), then the value of each budget counter ('0' if none).

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

for k = 2 * nrate + 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[k]) or '0'
end
return out
