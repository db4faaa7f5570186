-- Settle or release one reservation, atomically: only the first call finds it.
--
-- KEYS: [1] the reservation's hash, then the reservation set of each of its
--       keys, then (settling only) each key's day and month spend counters.
-- ARGV: [1] the actual cost in USD, or '' to release without charging
--       [2] the number of keys, [3] the day counters' TTL, [4] the month's (s)
-- Returns: 1 when the reservation was open (or expired but remembered), else 0.

local held_member = redis.call('HGET', KEYS[1], 'member')
if not held_member then
  return 0
end
redis.call('DEL', KEYS[1])
local nkeys = tonumber(ARGV[2])
for i = 1, nkeys do
  redis.call('ZREM', KEYS[1 + i], held_member)
end
if ARGV[1] ~= '' then
  for i = 1, nkeys do
    local day, month = KEYS[1 + nkeys + 2 * i - 1], KEYS[1 + nkeys + 2 * i]
    redis.call('INCRBYFLOAT', day, ARGV[1])
    redis.call('EXPIRE', day, ARGV[3])
    redis.call('INCRBYFLOAT', month, ARGV[1])
    redis.call('EXPIRE', month, ARGV[4])
  end
end
return 1
