-- luathrottle script: fixed_window
-- version: 3
--
-- SimpleRate: for each limit, a fixed window that opens at the first
-- admitted hit and admits at most max_requests units of cost until it ends.
-- Every limit must admit the hit, or nothing is written at all.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
--
-- State of a limit: the window's end, in milliseconds since EPOCH_MS,
-- followed by the count zero-padded to as many digits as max_requests has
-- ("960000000003": 3 hits of a limit below 10, in a window ending 96e9 ms
-- after EPOCH_MS), expiring when the window ends. Until 2055 and up to
-- 9999999 requests per window this is a number of at most 19 digits, which
-- Redis keeps as a 64-bit integer, 8 bytes, instead of a string.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       units left in the window after this call
--   reset_after_us  time until the whole quota is back (0 when unused)
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

-- Counting from here rather than from 1970 saves two digits per state.
local EPOCH_MS = 1700000000000

local consume = ARGV[1] == 'hit'
local cost = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local limits, counts, ends, statuses = {}, {}, {}, {}
local admitted = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 + 2 * i])
  local width = string.len(ARGV[2 + 2 * i])
  local count, window_end = 0, nil
  local state = redis.call('GET', KEYS[i])
  if state then
    local stored_end = (tonumber(string.sub(state, 1, -width - 1)) + EPOCH_MS) * 1000
    if stored_end > now then
      window_end = stored_end
      count = tonumber(string.sub(state, -width))
    end
  end
  local status = 1
  if cost > limit then
    status = -1
  elseif count + cost > limit then
    status = 0
  end
  if status ~= 1 then
    admitted = false
  end
  limits[i], counts[i], ends[i], statuses[i] = limit, count, window_end, status
end

local reply = {}
for i = 1, #KEYS do
  local count, window_end = counts[i], ends[i]
  if consume and admitted then
    count = count + cost
    if not window_end then
      window_end = floor_div(now + tonumber(ARGV[3 + 2 * i]) * 1000000, 1000) * 1000
    end
    local width = string.len(ARGV[2 + 2 * i])
    redis.call('SET', KEYS[i],
      string.format('%d%0' .. width .. 'd', window_end / 1000 - EPOCH_MS, count),
      'PX', ceil_div(window_end - now, 1000))
  end
  local reset_after, retry_after = 0, 0
  if window_end then
    reset_after = window_end - now
  end
  if statuses[i] == 0 then
    retry_after = reset_after
  end
  local base = 5 * (i - 1)
  reply[base + 1] = statuses[i]
  reply[base + 2] = limits[i]
  reply[base + 3] = limits[i] - count
  reply[base + 4] = reset_after
  reply[base + 5] = retry_after
end
return reply
