-- luathrottle script: leaky_bucket
-- version: 2
--
-- LeakyBucket: for each limit, a bucket that holds up to max_requests units
-- and drains continuously at max_requests units per duration. A hit pours
-- its cost in when it fits. Every limit must admit the hit, or nothing is
-- written at all.
--
-- The level is kept as drain time, in whole microseconds, so that all
-- arithmetic stays integral: one request takes drain = ceil(duration_us /
-- max_requests) to leak out, and the bucket holds max_requests * drain.
-- Rounding drain up to a whole microsecond slows the leak by less than one
-- microsecond per request, never faster than the configured rate.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
--
-- State of a limit: the time, in microseconds, at which the bucket will
-- have drained empty, expiring then. A number of 16 digits, which Redis
-- keeps as a 64-bit integer.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       whole requests that fit after this call
--   reset_after_us  time until the bucket is empty
--   retry_after_us  time until this hit would fit (0 when it fits now)

local function floor_div(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then
    return q - 1
  elseif r >= b then
    return q + 1
  end
  return q
end

local function ceil_div(a, b)
  return -floor_div(-a, b)
end

local consume = ARGV[1] == 'hit'
local cost = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local limits, drains, levels, statuses, retries = {}, {}, {}, {}, {}
local admitted = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  local drain = ceil_div(tonumber(ARGV[3 + 2 * i]) * 1000000, limit)
  local level = 0
  local empty_at = tonumber(redis.call('GET', KEYS[i]))
  if empty_at then
    level = math.max(empty_at - now, 0)
  end
  local status, retry_after = 1, 0
  if cost > limit then
    status = -1
  elseif level + cost * drain > limit * drain then
    status = 0
    retry_after = level + cost * drain - limit * drain
  end
  if status ~= 1 then
    admitted = false
  end
  limits[i], drains[i], levels[i] = limit, drain, level
  statuses[i], retries[i] = status, retry_after
end

local reply = {}
for i = 1, #KEYS do
  local limit, drain, level = limits[i], drains[i], levels[i]
  if consume and admitted then
    level = level + cost * drain
    redis.call('SET', KEYS[i], string.format('%d', now + level),
      'PX', ceil_div(level, 1000))
  end
  local base = 5 * (i - 1)
  reply[base + 1] = statuses[i]
  reply[base + 2] = limit
  reply[base + 3] = floor_div(limit * drain - level, drain)
  reply[base + 4] = level
  reply[base + 5] = retries[i]
end
return reply
