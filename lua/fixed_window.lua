-- luathrottle script: fixed_window
-- version: 3
--
-- SimpleRate: for each limit, a fixed window that opens at the first
-- admitted hit and admits at most max_requests units of cost until it ends.
-- Every limit must admit the hit, or nothing is written at all.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads
-- ARGV[2]          cost of the hit, an integer from 1 to the largest
--                  max_requests plus one (larger costs exceed all limits)
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
--
-- State of a limit: the window's end, in milliseconds since EPOCH_MS,
-- followed by the count zero-padded to as many digits as max_requests has
-- ("960000000003": 3 hits of a limit below 10, in a window ending 96e9 ms
-- after EPOCH_MS), expiring when the window ends. Until 2055 and up to
-- 9999999 requests per window this is a number of at most 19 digits, which
-- Redis keeps as a 64-bit integer, 8 bytes, instead of a string. Windows
-- that end before EPOCH_MS (clocks before November 2023) start with a '-'.
--
-- A state the script cannot read as its own was written by someone else:
-- another format (anything but an optional '-' and digits, too short, too
-- long), a count above max_requests, or a window ending more than its
-- duration plus SKEW_US after now. It counts as absent, so the next
-- admitted hit overwrites it with a state that expires, and the reply names
-- its limit.
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

local consume = ARGV[1] == 'hit'
-- Arithmetic reads a numeric string as tonumber does, without a call.
local cost = ARGV[2] + 0
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

-- The reply is filled in as the limits are read, and the writes read back
-- what they need from it, so that no table is built per limit. It starts
-- with room for one limit, as a table grown one field at a time is
-- reallocated at every power of two. Unreadable states are rare, so their
-- list is only made when one turns up.
local reply, admitted, unreadable = {0, 0, 0, 0, 0}, true, nil
for i = 1, #KEYS do
  local max_requests = ARGV[2 + 2 * i]
  local limit = max_requests + 0
  local count, reset_after = 0, 0
  local state = redis.call('GET', KEYS[i])
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
  for i = 1, #KEYS do
    local base = 5 * (i - 1)
    local max_requests = ARGV[2 + 2 * i]
    local count = reply[base + 2] - reply[base + 3] + cost
    local reset_after = reply[base + 4]
    -- Only a live window has time left: otherwise this hit opens one.
    if reset_after == 0 then
      local duration_us = ARGV[3 + 2 * i] * 1000000
      reset_after = math.floor((now + duration_us) / 1000) * 1000 - now
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
    redis.call('SET', KEYS[i], state, 'PX', math.ceil(reset_after / 1000))
    reply[base + 3] = reply[base + 3] - cost
    reply[base + 4] = reset_after
  end
end
if unreadable then
  for j = 1, #unreadable do
    reply[#reply + 1] = unreadable[j]
  end
end
return reply
