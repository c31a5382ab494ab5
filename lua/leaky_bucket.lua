-- luathrottle script: leaky_bucket
-- version: 1
--
-- LeakyBucket: for each limit, a bucket that holds up to max_requests units
-- and drains continuously at max_requests units per duration. A hit pours
-- its cost in when it fits. Every limit must admit the hit, or nothing is
-- written at all.
--
-- Levels are kept in scaled units so that all arithmetic stays integral:
-- one request is duration_us units, the bucket holds max_requests *
-- duration_us units, and max_requests units leak out per microsecond.
-- Callers keep max_requests * duration_us within 2^53.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
--
-- State of a limit: the string "<level>:<updated_us>", expiring when the
-- bucket has drained empty.
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

local limits, units, levels, statuses, retries = {}, {}, {}, {}, {}
local admitted = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  local unit = tonumber(ARGV[3 + 2 * i]) * 1000000
  local capacity = limit * unit
  local level = 0
  local state = redis.call('GET', KEYS[i])
  if state then
    local sep = string.find(state, ':', 1, true)
    local updated = tonumber(string.sub(state, sep + 1))
    -- A full bucket drains in one duration, so longer idle times leak no
    -- more; capping here also keeps elapsed * limit within capacity.
    local elapsed = math.min(math.max(now - updated, 0), unit)
    level = math.max(tonumber(string.sub(state, 1, sep - 1)) - elapsed * limit, 0)
  end
  local status, retry_after = 1, 0
  if cost > limit then
    status = -1
  elseif level + cost * unit > capacity then
    status = 0
    retry_after = ceil_div(level + cost * unit - capacity, limit)
  end
  if status ~= 1 then
    admitted = false
  end
  limits[i], units[i], levels[i] = limit, unit, level
  statuses[i], retries[i] = status, retry_after
end

local reply = {}
for i = 1, #KEYS do
  local limit, unit, level = limits[i], units[i], levels[i]
  if consume and admitted then
    level = level + cost * unit
    redis.call('SET', KEYS[i], string.format('%d:%d', level, now),
      'PX', ceil_div(ceil_div(level, limit), 1000))
  end
  local base = 5 * (i - 1)
  reply[base + 1] = statuses[i]
  reply[base + 2] = limit
  reply[base + 3] = floor_div(limit * unit - level, unit)
  reply[base + 4] = ceil_div(level, limit)
  reply[base + 5] = retries[i]
end
return reply
