-- luathrottle script: fixed_window
-- version: 4
-- layout: hash
--
-- SimpleRate: for each limit, a fixed window that opens at the first
-- admitted hit and admits at most max_requests units of cost until it ends.
-- Every limit must admit the hit, or nothing is written at all.
--
-- n = #KEYS limits. Every limit of one identity is a field of one hash, so
-- that several limits cost one HMGET and one HSET rather than a GET and a
-- SET each.
--
-- KEYS[i]          the hash of limit i's identity; all keys share a hash
--                  tag, and each run of limits sharing a hash is read and
--                  written at once, so a caller puts them next to each other
-- ARGV[1]          "hit" consumes the cost, "peek" only reads, "reset"
--                  deletes every limit's field and replies nothing
-- ARGV[2]          cost of the hit, an integer from 1 to the largest
--                  max_requests plus one (larger costs exceed all limits)
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
-- ARGV[3 + 2n + i] limit i's field in its hash
--
-- State of a limit, in its field: the window's end, in milliseconds since
-- EPOCH_MS, followed by the count zero-padded to as many digits as
-- max_requests has ("960000000003": 3 hits of a limit below 10, in a window
-- ending 96e9 ms after EPOCH_MS). Until 2055 and up to 9999999 requests per
-- window this is a number of at most 19 digits, which a small hash keeps as
-- a 64-bit integer. Windows that end before EPOCH_MS (clocks before
-- November 2023) start with a '-'. A field outlives its window until the
-- hash expires, which is when the last window of any of its fields ends:
-- the state says when its window ended, so a stale field reads as unused.
--
-- A state the script cannot read as its own was written by someone else:
-- another format (anything but an optional '-' and digits, too short, too
-- long), a count above max_requests, or a window ending more than its
-- duration plus SKEW_US after now. So is every field of a key that holds
-- no hash. It counts as absent, so the next admitted hit overwrites it (a
-- key of another type is deleted first), and the reply names its limit.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       units left in the window after this call
--   reset_after_us  time until the whole quota is back (0 when unused)
--   retry_after_us  time until this hit would fit (0 when it fits now)
-- then, only when there are any, the index (from 1, in KEYS order) of each
-- limit whose state was unreadable.

-- Counting from here rather than from 1970 saves two digits per state.
local EPOCH_MS = 1700000000000
-- Integers below 2^53 are exact as Lua numbers. A state below it is split
-- into end and count, and written, by arithmetic rather than by cutting and
-- joining strings; math.floor and math.ceil divide such integers exactly.
local EXACT = 9007199254740992
-- A window may end this much beyond now plus its duration: the margin lets
-- clients whose clocks (the clock= option) disagree by up to five
-- minutes share windows.
local SKEW_US = 300000000
-- Digits of a window, in milliseconds since EPOCH_MS, and its sign: enough
-- for the next 30,000 years.
local WINDOW_DIGITS = 16

local n = #KEYS
local FIELDS = 3 + 2 * n

-- The last limit of the run of limits that share limit first's hash.
local function run_end(first)
  local last = first
  while last < n and KEYS[last + 1] == KEYS[first] do
    last = last + 1
  end
  return last
end

if ARGV[1] == 'reset' then
  local first = 1
  while first <= n do
    local last = run_end(first)
    -- A key of another type holds none of our state: nothing to forget.
    redis.pcall('HDEL', KEYS[first], unpack(ARGV, FIELDS + first, FIELDS + last))
    first = last + 1
  end
  return {}
end

local consume = ARGV[1] == 'hit'
-- Arithmetic reads a numeric string as tonumber does, without a call.
local cost = ARGV[2] + 0
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

-- Each run of limits sharing a hash is one HMGET. A key holding no hash
-- reads as '' for each of its limits, a state no limit can read, and is
-- remembered so that a hit deletes it before writing.
local states, foreign = nil, nil
local first = 1
while first <= n do
  local last = run_end(first)
  local read = redis.pcall('HMGET', KEYS[first],
    unpack(ARGV, FIELDS + first, FIELDS + last))
  if read.err then
    foreign = foreign or {}
    foreign[KEYS[first]] = true
    read = {}
    for i = first, last do
      read[i - first + 1] = ''
    end
  end
  if first == 1 and last == n then
    states = read
  else
    states = states or {}
    for i = first, last do
      states[i] = read[i - first + 1]
    end
  end
  first = last + 1
end

-- The reply is filled in as the limits are read, and the writes read back
-- what they need from it, so that no table is built per limit. It starts
-- with room for one limit, as a table grown one field at a time is
-- reallocated at every power of two. Unreadable states are rare, so their
-- list is only made when one turns up.
local reply, admitted, unreadable = {0, 0, 0, 0, 0}, true, nil
for i = 1, n do
  local max_requests = ARGV[2 + 2 * i]
  local limit = max_requests + 0
  local count, reset_after = 0, 0
  local state = states[i]
  if state then
    local digits = #max_requests
    local window_end, used
    -- Checked before any arithmetic, which raises an error on a string that
    -- is no number and reads "inf", "0x1f" or " 5" as numbers.
    if #state > digits and #state <= digits + WINDOW_DIGITS
        and string.find(state, '^%-?%d+$') then
      local number, scale = state + 0, 10 ^ digits
      if number >= 0 and number < EXACT then
        used = number % scale
        window_end = ((number - used) / scale + EPOCH_MS) * 1000
      else
        local window = string.sub(state, 1, -digits - 1)
        if window ~= '-' then
          window_end = (window + EPOCH_MS) * 1000
          used = string.sub(state, -digits) + 0
        end
      end
      if window_end and (used > limit or
          window_end > now + ARGV[3 + 2 * i] * 1000000 + SKEW_US) then
        window_end = nil
      end
    end
    if not window_end then
      unreadable = unreadable or {}
      unreadable[#unreadable + 1] = i
    elseif window_end > now then
      count, reset_after = used, window_end - now
    end
  end
  local status, retry_after = 1, 0
  if cost > limit then
    status, admitted = -1, false
  elseif count + cost > limit then
    status, retry_after, admitted = 0, reset_after, false
  end
  local base = 5 * (i - 1)
  reply[base + 1] = status
  reply[base + 2] = limit
  reply[base + 3] = limit - count
  reply[base + 4] = reset_after
  reply[base + 5] = retry_after
end

if consume and admitted then
  -- Each run is one HSET. A hash lives until the last window of any of its
  -- fields ends, so it only needs a longer life when a window opens.
  local writes, opened = {}, 0
  for i = 1, n do
    local base = 5 * (i - 1)
    local max_requests = ARGV[2 + 2 * i]
    local count = reply[base + 2] - reply[base + 3] + cost
    local reset_after = reply[base + 4]
    -- Only a live window has time left: otherwise this hit opens one.
    if reset_after == 0 then
      local duration_us = ARGV[3 + 2 * i] * 1000000
      reset_after = math.floor((now + duration_us) / 1000) * 1000 - now
      if reset_after > opened then
        opened = reset_after
      end
    end
    local window = (now + reset_after) / 1000 - EPOCH_MS
    local scale = 10 ^ #max_requests
    local state = window * scale + count
    -- The digits the format below would give, whenever window and count fit
    -- side by side in one exact number.
    if window > 0 and count < scale and state < EXACT then
      state = string.format('%d', state)
    else
      state = string.format('%d%0' .. #max_requests .. 'd', window, count)
    end
    writes[#writes + 1] = ARGV[FIELDS + i]
    writes[#writes + 1] = state
    reply[base + 3] = reply[base + 3] - cost
    reply[base + 4] = reset_after
    if i == n or KEYS[i + 1] ~= KEYS[i] then
      local key = KEYS[i]
      if foreign and foreign[key] then
        redis.call('DEL', key)
        foreign[key] = nil
      end
      redis.call('HSET', key, unpack(writes))
      if opened > 0 then
        local ms = math.ceil(opened / 1000)
        -- Compared with <=, as PTTL rounds a last partial millisecond up.
        if redis.call('PTTL', key) <= ms then
          redis.call('PEXPIRE', key, ms)
        end
      end
      writes, opened = {}, 0
    end
  end
end
if unreadable then
  for j = 1, #unreadable do
    reply[#reply + 1] = unreadable[j]
  end
end
return reply
