-- luathrottle script: torture_swap
-- version: 4
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
-- ARGV[5]  max_requests, whose digits pad a count in a sliding window's
--          state
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
  -- The window's end, a colon and the count.
  return {tonumber(string.match(state, ':(%d+)$')), 0}
end
local digits = #ARGV[5]
if ARGV[3] == 'sliding' then
  -- The previous window's count and the current one's; a short run stays in
  -- one window, so the previous one holds nothing. The integer form drops
  -- leading zeros, so a count may be missing.
  local previous = tonumber(string.sub(state, -2 * digits, -digits - 1)) or 0
  return {previous + tonumber(string.sub(state, -digits)), 0}
end
local time = redis.call('TIME')
local level = state - (time[1] * 1000000 + time[2])
return {math.max(math.ceil(level / ARGV[4]), 0), 0}
