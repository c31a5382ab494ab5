-- luathrottle script: sliding_window
-- version: 5
-- state: 2
--
-- SlidingWindow: for each limit, the two-window weighted counter. Windows
-- are aligned to multiples of the duration since 1970. A hit's estimate is
-- the previous window's count, weighted by the share of that window the
-- sliding window still covers, plus the current window's count:
--
--   estimate = previous * (1 - elapsed / duration) + current
--
-- and a hit of cost n is admitted when estimate + n <= max_requests. Every
-- limit must admit the hit, or nothing is written at all;
-- with "each", every limit that admits it counts it.
--
-- The comparison is exact, in integers. Time counts in steps of unit
-- microseconds, elapsed rounded down to a whole step, and with steps =
-- duration_us / unit a hit is admitted when
--
--   previous * (steps - elapsed) + (current + n) * steps
--       <= max_requests * steps
--
-- unit is 1 microsecond, unless max_requests * duration_us passes 2^52:
-- then it is the smallest power of ten, up to a second, that keeps
-- max_requests * steps within 2^52, so that every product and sum stays
-- exact below 2^53 (the algorithm's check_limits refuses limits for which
-- a second is not enough). The previous window's weight then falls in
-- steps of unit; retry_after is exact to the microsecond either way.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads, "refund"
--                  gives the cost back (see Refunds below)
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
-- ARGV[3 + 2n + i] limit i's penalty in microseconds, 0 for none (see
--                  Penalties below)
-- ARGV[4 + 3n]     optional: "each" counts a hit in every limit that
--                  admits it, even when another denies it; absent, a hit
--                  any limit denies counts in none (all or nothing)
--
-- State of a limit: the window's index counted from EPOCH_US (the number
-- of whole durations between EPOCH_US rounded down to a window and the
-- window's start), the previous and the current window's counts, and the
-- duration in seconds, apart by colons ("12345:3:1:60": 1 hit in minute
-- 12345 and 3 in the one before), then, while the limit holds a penalty,
-- when it ends, in microseconds since 1970 (":1800000030000000"). It
-- expires when the current window's count stops weighing, two durations
-- after the window's start, or when its penalty ends, if later.
--
-- The key names a limit by its name or its window, not by max_requests,
-- so the state is judged against the limit given now: a count above a
-- lowered max_requests weighs as a full window, so the current window
-- admits nothing until it ends, and the next weighs it as a full previous
-- one. A named limit whose duration changed keeps what its old window
-- still counted, its current and, if that is still current, its previous
-- count, as the count of the new duration's current window; a hit,
-- admitted or not, writes the state so moved, so that it weighs in
-- windows of the new duration from then on.
--
-- A state the script cannot read as its own was written by someone else:
-- another format, a count of more than 16 digits, a window starting more
-- than SKEW_US after now, or a key of another type (a hash, a list: GET
-- answers it with an error). It counts as absent, so a peek writes nothing
-- and the next admitted hit overwrites it (SET replaces a key of any type)
-- with a state that expires; the reply names its limit.
--
-- Penalties: a limit with a penalty that denies a hit (status 0, not a
-- cost above max_requests, and only a hit: a peek writes nothing) writes
-- in its state that it is penalised until now plus the penalty, and
-- until then denies every hit, whatever its counts, with retry_after and
-- reset_after at least the penalty left and remaining 0. A denial during
-- a penalty never lengthens it. The penalty counts nothing: the counts
-- are kept as they are. A stored penalty is honoured only while the limit
-- has a penalty, and only when it ends no later than the limit's penalty
-- plus SKEW_US from now: one written under a longer penalty, or by
-- someone else, is ignored.
--
-- Refunds: ARGV as for a hit, then ARGV[3 + 3n + i], limit i's anchor:
-- when the hit being refunded said its count stops weighing, in
-- microseconds since 1970 (its now plus its reset_after_us), or "" for the
-- current window. A refund takes the cost off the current window's count
-- when that window is the anchor's (it stops weighing less than half a
-- duration from the anchor) and the state is of the limit's duration,
-- never below 0, and expires when a hit would have; a count that already
-- weighs as the previous window's, or a state the script cannot read, is
-- left alone. It replies as a peek of cost 1 after the refund.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       whole hits of cost 1 that fit after this call
--   reset_after_us  time until the estimate is back to 0
--   retry_after_us  time until this hit would fit (0 when it fits now)
-- then, only when there are any, the index (from 1, in KEYS order) of each
-- limit whose state was unreadable.

-- Counting windows from here rather than from 1970 saves digits per state.
local EPOCH_US = 1700000000000000
-- Integers below 2^53 are exact as Lua numbers, and math.floor and
-- math.ceil divide them exactly; products of limit and steps stay within
-- BOUND.
local BOUND = 4503599627370496
-- A window may start this much after now: the margin lets clients whose
-- clocks (the clock= option) disagree by up to five minutes share windows.
local SKEW_US = 300000000

local n = #KEYS
local PENALTIES = 3 + 2 * n
local consume = ARGV[1] == 'hit'
-- Arithmetic reads a numeric string as tonumber does, without a call.
local cost = ARGV[2] + 0
local now = ARGV[3] ~= '' and tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

-- A state's window index, counts and duration, and its penalty's end (''
-- for none), or nothing when it is not one of ours. Matched before any
-- arithmetic, which reads "inf" or " 5" as numbers.
local match = string.match
local function parse(state)
  local stored, first, second, was = match(state, '^(-?%d+):(%d+):(%d+):(%d+)$')
  if stored then
    return stored, first, second, was, ''
  end
  local ends
  stored, first, second, was, ends = match(state,
    '^(-?%d+):(%d+):(%d+):(%d+):(%d+)$')
  if ends and #ends <= 16 then
    return stored, first, second, was, ends
  end
end

-- Refunds only ever lower the current window's count: kept apart from the
-- decision below, as they are rare, and replying what a peek would; in a
-- block rather than a function, so that a hit makes no closure for them.
if ARGV[1] == 'refund' then
  for i = 1, #KEYS do
    local duration = ARGV[3 + 2 * i] * 1000000
    local window = math.floor(now / duration)
    local index = window - math.floor(EPOCH_US / duration)
    local ends_at = window * duration + 2 * duration
    local anchor = tonumber(ARGV[3 + 3 * n + i])
    local state = redis.pcall('GET', KEYS[i])
    local stored, first, second, was, ends
    if type(state) == 'string' then
      stored, first, second, was, ends = parse(state)
    end
    if stored and #stored <= 17 and #first <= 16 and #second <= 16 and #was <= 9
        and was * 1000000 == duration and stored + 0 == index
        and (not anchor or math.abs(ends_at - anchor) * 2 < duration) then
      -- A refund leaves a penalty as it is, and the state lives as long.
      local current = math.max(second - cost, 0)
      local lives = ends_at - now
      if ends ~= '' and ends - now > lives then
        lives = ends - now
      end
      redis.call('SET', KEYS[i], string.format('%d:%d:%d:%s', index, first, current,
        ARGV[3 + 2 * i]) .. (ends ~= '' and ':' .. ends or ''),
        'PX', math.ceil(lives / 1000))
    end
  end
  -- The decision below then reads as a peek of cost 1: consume is false.
  cost = 1
end

-- The first step of a window at which a count of weight, decaying over
-- the window, leaves room for room units: weight * (steps - step) <= room *
-- steps. Nil when no step of the window does.
local function first_step(weight, room, steps)
  if weight == 0 then
    return 0
  end
  local free = math.floor(room * steps / weight)
  if free >= steps then
    return 0
  elseif free < 1 then
    return nil
  end
  return steps - free
end

-- The reply is filled in as the limits are read; counts keeps, for the
-- writes, each limit's window index, counts and time until its current
-- window stops weighing, four numbers per limit, so that each string is
-- read as a number once. The hot path rounds with % rather than
-- math.floor and math.ceil, and compares rather than call math.min or
-- math.max: a call costs more than the arithmetic, and both are exact on
-- integers below 2^53.
-- Unreadable states are rare, so their list is only made when one turns up.
-- A limit that is penalised keeps, in penalised, when its penalty ends;
-- started says whether this hit started one. Only made when a limit has a
-- penalty running.
local reply, counts, admitted, unreadable = {0, 0, 0, 0, 0}, {}, true, nil
local moved, penalised, started = nil, nil, false
for i = 1, #KEYS do
  local limit = ARGV[2 + 2 * i] + 0
  local duration = ARGV[3 + 2 * i] * 1000000
  local unit = 1
  while limit * duration > BOUND * unit and unit < 1000000 do
    unit = unit * 10
  end
  local steps = duration / unit
  local offset = now % duration
  local start = now - offset
  local window = start / duration
  local elapsed = (offset - offset % unit) / unit
  local index = window - (EPOCH_US - EPOCH_US % duration) / duration
  local previous, current = 0, 0
  -- A key of another type fails GET: pcall gives its error as a table,
  -- which no limit reads, rather than failing the call.
  local state = redis.pcall('GET', KEYS[i])
  local ends = ''
  if state then
    local stored, first, second, was
    if type(state) == 'string' then
      -- Most states hold no penalty: one match reads them.
      stored, first, second, was = match(state, '^(-?%d+):(%d+):(%d+):(%d+)$')
      if not stored then
        stored, first, second, was, ends = parse(state)
      end
    end
    local readable = stored and #stored <= 17 and #first <= 16 and #second <= 16
      and #was <= 9
    local at
    if readable then
      stored, first, second = stored + 0, first + 0, second + 0
      -- The index of now's window in the state's own duration: the
      -- limit's, read above, when the state holds it as the limit gives it.
      local window_was
      if was == ARGV[3 + 2 * i] then
        was, window_was, at = duration, window, index
      else
        was = was * 1000000
        window_was = math.floor(now / was)
        at = window_was - math.floor(EPOCH_US / was)
      end
      readable = was > 0 and (stored - at) * was <= now - window_was * was + SKEW_US
    end
    if not readable then
      unreadable = unreadable or {}
      unreadable[#unreadable + 1] = i
      ends = ''
    elseif was ~= duration then
      -- A named limit's window changed: what the old window still counts
      -- counts in the new one's current window.
      if stored == at then
        current = first + second
      elseif stored == at - 1 then
        current = second
      end
      if current > 0 then
        moved = moved or {}
        moved[i] = true
      end
    elseif stored == index then
      previous, current = first, second
    elseif stored == index - 1 then
      previous = second
    end
  end
  -- A hit writes the counts as read; the arithmetic weighs no more than a
  -- full window, which keeps every product within BOUND.
  local c = 4 * i
  counts[c - 3], counts[c - 2], counts[c - 1] = index, previous, current
  counts[c] = start + 2 * duration - now
  previous = previous < limit and previous or limit
  current = current < limit and current or limit
  local weighted = previous * (steps - elapsed)
  local status, retry_after = 1, 0
  if cost > limit then
    status, admitted = -1, false
  elseif current + cost > limit
      or weighted + (current + cost) * steps > limit * steps then
    status, admitted = 0, false
    -- The estimate only falls as time passes: the hit fits from the first
    -- step of this window, of the next (where current weighs as previous
    -- did) or, failing both, from the start of the one after.
    local step = nil
    if current + cost <= limit then
      step = first_step(previous, limit - current - cost, steps)
    end
    if step then
      retry_after = start + step * unit - now
    else
      step = first_step(current, limit - cost, steps)
      if step then
        retry_after = start + duration + step * unit - now
      else
        retry_after = start + 2 * duration - now
      end
    end
  end
  local base = 5 * (i - 1)
  reply[base + 1] = status
  reply[base + 2] = limit
  local part = weighted % steps
  local left = limit - current - (weighted - part) / steps - (part > 0 and 1 or 0)
  reply[base + 3] = left > 0 and left or 0
  if current > 0 then
    reply[base + 4] = start + 2 * duration - now
  elseif previous > 0 then
    reply[base + 4] = start + duration - now
  else
    reply[base + 4] = 0
  end
  reply[base + 5] = retry_after
  -- Most limits have no penalty, sent as "0": no conversion then.
  local penalty = ARGV[PENALTIES + i]
  penalty = penalty ~= '0' and penalty + 0 or 0
  if penalty > 0 and status ~= -1 then
    local left = ends and ends ~= '' and ends - now or 0
    if left <= 0 or left > penalty + SKEW_US then
      left = 0
      if consume and status == 0 then
        left, started = penalty, true
      end
    end
    if left > 0 then
      reply[base + 1], admitted = 0, false
      penalised = penalised or {}
      penalised[i] = now + left
    end
  end
end

-- A denied hit still writes a state it moved to a new duration: it counts
-- nothing.
local each = ARGV[4 + 3 * n] == 'each'
if consume and (admitted or moved or each or started) then
  for i = 1, #KEYS do
    local base = 5 * (i - 1)
    -- Under "each", a limit that admits the hit counts it, whatever the
    -- others say.
    local spends = admitted or (each and reply[base + 1] == 1)
    -- A penalty is kept in the state whenever it is written, and one that
    -- starts writes it.
    local ends = penalised and penalised[i]
    if spends or (moved and moved[i]) or ends then
      local c = 4 * i
      local index, previous, current = counts[c - 3], counts[c - 2], counts[c - 1]
      local reset_after = counts[c]
      if spends then
        current = current + cost
        reply[base + 3] = reply[base + 3] - cost
        reply[base + 4] = reset_after
      end
      local lives = reset_after
      if ends and ends - now > lives then
        lives = ends - now
      end
      local state
      if ends then
        state = string.format('%d:%d:%d:%s:%d', index, previous, current,
          ARGV[3 + 2 * i], ends)
      else
        state = string.format('%d:%d:%d:%s', index, previous, current, ARGV[3 + 2 * i])
      end
      -- Milliseconds rounded up, sent as a string: Redis turns a number
      -- into one with a costly %.17g.
      local ms = lives % 1000
      ms = (lives - ms) / 1000 + (ms > 0 and 1 or 0)
      redis.call('SET', KEYS[i], state, 'PX', string.format('%d', ms))
    end
  end
end
-- The penalty shows in the reply once the writes have read it.
if penalised then
  for i = 1, n do
    local ends = penalised[i]
    if ends then
      local base, left = 5 * (i - 1), ends - now
      reply[base + 3] = 0
      reply[base + 4] = math.max(reply[base + 4], left)
      reply[base + 5] = math.max(reply[base + 5], left)
    end
  end
end
if unreadable then
  for j = 1, #unreadable do
    reply[#reply + 1] = unreadable[j]
  end
end
return reply
