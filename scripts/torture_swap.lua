-- luathrottle script: torture_swap
-- version: 5
--
-- scripts/torture.py --garbage: swaps a key's state for garbage in one
-- atomic call, and answers how many units the replaced state held, so that
-- the run knows what the store had counted before the garbage erased it.
--
-- KEYS[1]  the state key, or the hash that holds the state
-- ARGV[1]  the garbage to write
-- ARGV[2]  the garbage written last: a state equal to it held nothing
-- ARGV[3]  the algorithm: simple, leaky, token or sliding
-- ARGV[4]  the time one request takes to drain, in microseconds (leaky and
--          token buckets; none drains during a run)
-- ARGV[5]  max_requests
-- ARGV[6]  the state's field in the hash, for a hashed script (SimpleRate)
--
-- Reply: {units held, 0}; the second integer is there because the embedded
-- backend takes replies of two or more.

local state
if ARGV[6] then
  state = redis.call('HMGET', KEYS[1], ARGV[6])[1]
  redis.call('HSET', KEYS[1], ARGV[6], ARGV[1])
else
  state = redis.call('GET', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[1])
end
if not state or state == ARGV[2] then
  return {0, 0}
end
if ARGV[3] == 'simple' then
  -- The window's end, the count and the duration, apart by colons.
  return {tonumber(string.match(state, '^%d+:(%d+):')), 0}
end
if ARGV[3] == 'sliding' then
  -- The window's index, the previous window's count and the current one's,
  -- and the duration; a short run stays in one window, so the previous one
  -- holds nothing.
  local previous, current = string.match(state, '^%-?%d+:(%d+):(%d+):')
  return {previous + current, 0}
end
-- When the bucket is empty (or full), its drain (or interval) and its size.
local time = redis.call('TIME')
local level = string.match(state, '^(%d+):') - (time[1] * 1000000 + time[2])
return {math.max(math.ceil(level / ARGV[4]), 0), 0}
