-- luathrottle script: sliding_window
-- version: 7
-- state: 3
-- layout: hash
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
-- n = #KEYS limits. Every limit of one identity is a field of one hash, so
-- that several limits cost one HMGET and one HSET rather than a GET and a
-- SET each.
--
-- KEYS[i]          the hash of limit i's identity; all keys share a hash
--                  tag, and each run of limits sharing a hash is read and
--                  written at once, so a caller puts them next to each other
-- ARGV[1]          "hit" consumes the cost, "peek" only reads, "reset"
--                  deletes every limit's field and replies nothing,
--                  "refund" gives the cost back (see Refunds below)
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     duration of limit i, in seconds
-- ARGV[3 + 2n + i] limit i's penalty in microseconds, 0 for none (see
--                  Penalties below)
-- ARGV[3 + 3n + i] limit i's field in its hash
-- ARGV[4 + 4n]     optional: "each" counts a hit in every limit that
--                  admits it, even when another denies it; absent, a hit
--                  any limit denies counts in none (all or nothing)
--
-- State of a limit, in its field: the window's index counted from EPOCH_US
-- (the number of whole durations between EPOCH_US rounded down to a window
-- and the window's start), the previous and the current window's counts,
-- and the duration in seconds, apart by colons ("12345:3:1:60": 1 hit in
-- minute 12345 and 3 in the one before), then, while the limit holds a
-- penalty, when it ends, in microseconds since 1970 (":1800000030000000").
-- A state stops mattering when its current window's count stops weighing,
-- two durations after the window's start, or when its penalty ends, if
-- later. A field outlives that until the hash expires: the state says
-- which window it counts, so a stale field reads as unused.
--
-- Expiry: the hash must live until the latest state of any of its fields
-- stops mattering, and Redis keeps no expiry per field. Rather than
-- PEXPIRE at every hit, a write extends the hash's life only when it must:
-- when it writes a field whose stored state was absent, unreadable, of
-- another duration or of an earlier window (the hit opens a new current
-- window), to the end of that window's weight, (index + 2) * duration
-- from now's window, and when a penalty starts, to its end; with one PTTL,
-- and a PEXPIRE only when that is later than the hash's expiry, per run.
-- A state of the window it is written in was written before in this
-- window, when the hash was made to live past the window's weight; as no
-- PEXPIRE shortens a life and DEL takes every field with the hash, the
-- hash still lives that long. A penalty kept is one that started, and
-- was covered then.
--
-- The field names a limit by its name or its window, not by max_requests,
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
-- another format, a count of more than 16 digits, or a window starting
-- more than SKEW_US after now. So is every field of a key that holds no
-- hash. It counts as absent, so a peek writes nothing and the next
-- admitted hit overwrites it (a key of another type is deleted first);
-- the reply names its limit.
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
-- Refunds: ARGV as for a hit, then ARGV[3 + 4n + i], limit i's anchor:
-- when the hit being refunded said its count stops weighing, in
-- microseconds since 1970 (its now plus its reset_after_us), or "" for the
-- current window. A refund takes the cost off the current window's count
-- when that window is the anchor's (it stops weighing less than half a
-- duration from the anchor) and the state is of the limit's duration,
-- never below 0; a count that already weighs as the previous window's, or
-- a state the script cannot read, is left alone. It writes the state of
-- the window it was written in, so the hash lives long enough already. It
-- replies as a peek of cost 1 after the refund.
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

-- Locals, as each global read is a lookup by name.
local KEYS, ARGV = KEYS, ARGV
local n = #KEYS
local PENALTIES = 3 + 2 * n
local FIELDS = 3 + 3 * n

-- Limits that share a hash come in runs, and a run ends at limit i when
-- the next limit's hash differs.
if ARGV[1] == 'reset' then
  local first = 1
  for i = 1, n do
    if i == n or KEYS[i + 1] ~= KEYS[i] then
      -- A key of another type holds none of our state: nothing to forget.
      redis.pcall('HDEL', KEYS[i], unpack(ARGV, FIELDS + first, FIELDS + i))
      first = i + 1
    end
  end
  return {}
end

local consume = ARGV[1] == 'hit'
-- Arithmetic reads a numeric string as tonumber does, without a call.
local cost = ARGV[2] + 0
local now
if ARGV[3] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = ARGV[3] + 0
end

-- A state is matched before any arithmetic, which reads "inf" or " 5" as
-- numbers: most hold no penalty, and one match reads them.
local match = string.match
local PLAIN = '^(-?%d+):(%d+):(%d+):(%d+)$'
local PENALISED = '^(-?%d+):(%d+):(%d+):(%d+):(%d+)$'

-- Refunds only ever lower the current window's count: kept apart from the
-- decision below, as they are rare, and reading each field on its own; in
-- a block rather than a function, so that a hit makes no closure for them.
if ARGV[1] == 'refund' then
  for i = 1, n do
    local duration = ARGV[3 + 2 * i] * 1000000
    local window = math.floor(now / duration)
    local index = window - math.floor(EPOCH_US / duration)
    local ends_at = window * duration + 2 * duration
    local anchor = tonumber(ARGV[FIELDS + n + i])
    local read = redis.pcall('HMGET', KEYS[i], ARGV[FIELDS + i])
    local state = not read.err and read[1]
    local stored, first, second, was, ends
    if state then
      ends = ''
      stored, first, second, was = match(state, PLAIN)
      if not stored then
        stored, first, second, was, ends = match(state, PENALISED)
        if ends and #ends > 16 then
          stored = nil
        end
      end
    end
    if stored and #stored <= 17 and #first <= 16 and #second <= 16 and #was <= 9
        and was * 1000000 == duration and stored + 0 == index
        and (not anchor or math.abs(ends_at - anchor) * 2 < duration) then
      -- A refund leaves a penalty as it is.
      local current = math.max(second - cost, 0)
      redis.call('HSET', KEYS[i], ARGV[FIELDS + i], string.format('%d:%d:%d:%s',
        index, first, current, ARGV[3 + 2 * i]) .. (ends ~= '' and ':' .. ends or ''))
    end
  end
  -- The decision below then reads as a peek of cost 1: consume is false.
  cost = 1
end

-- Each run is one HMGET. A key holding no hash reads as '' for each of its
-- limits, a state no limit can read, and is remembered so that a hit
-- deletes it before writing. whole says that one HMGET read them all.
local states, foreign, whole = nil, nil, false
local first = 1
for i = 1, n do
  if i == n or KEYS[i + 1] ~= KEYS[i] then
    local read = redis.pcall('HMGET', KEYS[i], unpack(ARGV, FIELDS + first, FIELDS + i))
    if read.err then
      foreign = foreign or {}
      foreign[KEYS[i]] = true
      read = {}
      for j = first, i do
        read[j - first + 1] = ''
      end
    end
    if first == 1 and i == n then
      states, whole = read, true
    else
      states = states or {}
      for j = first, i do
        states[j] = read[j - first + 1]
      end
    end
    first = i + 1
  end
end

-- The reply is filled in as the limits are read, and what the writes need
-- is kept as it is found, with no table per call on the hot path: tables
-- cost more than anything else a hit does. Most hits read a state of this
-- window and duration with a count in it, which one that admits the hit
-- writes back with the cost added: that state is made at once, in the
-- place of the one read in states (a hit another limit denies makes it in
-- vain). The writes of the others need, in rare, four values per limit,
-- so that each string is read as a number once: the window's index and
-- previous count, the current count, and the time until the current
-- window stops weighing, negative when a write needs the hash to live
-- that long (see Expiry above). A state read that is of this window and
-- duration needs no longer life, and keeps its index and previous count
-- as the strings read, to be written back as they are.
-- The hot path rounds with % rather than math.floor and math.ceil, and
-- compares rather than call math.min or math.max: a call costs more than
-- the arithmetic, and both are exact on integers below 2^53.
-- Unreadable states are rare, so their list is only made when one turns up.
-- A limit that is penalised keeps, in penalised, when its penalty ends;
-- started says which limits this hit penalised. Only made when a limit has
-- a penalty running.
local reply, admitted, unreadable = {0, 0, 0, 0, 0}, true, nil
local moved, penalised, started, rare = nil, nil, nil, nil
local format = string.format
for i = 1, n do
  local limit = ARGV[2 + 2 * i] + 0
  local seconds = ARGV[3 + 2 * i]
  local duration = seconds * 1000000
  local offset = now % duration
  -- Now's window counted from EPOCH_US's: the difference of two multiples
  -- of duration, divided at once.
  local index = (now - offset - EPOCH_US + EPOCH_US % duration) / duration
  local lives = duration + duration - offset
  -- What the writes need (see counts above): unless the state read is of
  -- this window, the index and previous count as numbers, and a life the
  -- hash must be given.
  local kept_index, kept_previous, kept_lives = index, 0, -lives
  local previous, current = 0, 0
  local state = states[i]
  local ends = ''
  if state then
    local stored, first, second, was = match(state, PLAIN)
    -- Most hits read the state of this window, which starts before now.
    -- Its duration is the limit's, of 9 digits at most (a limit lasts 10
    -- years at most), and a state of at most 22 characters has no count
    -- of more than 16 digits: no field's length to check. A previous
    -- count of 0, as in every state of an identity seen only in this
    -- window, needs no conversion.
    if was == seconds and #state <= 22 and stored + 0 == index then
      previous, current = first == '0' and 0 or first + 0, second + 0
      kept_index, kept_previous, kept_lives = stored, first, lives
    else
      if not stored then
        stored, first, second, was, ends = match(state, PENALISED)
        if ends and #ends > 16 then
          stored = nil
        end
      end
      local readable = stored and #stored <= 17 and #first <= 16 and #second <= 16
        and #was <= 9
      if readable then
        local read_index = stored + 0
        if read_index == index and was == seconds then
          -- As above, for a state longer than 22 characters.
          previous, current = first == '0' and 0 or first + 0, second + 0
          kept_index, kept_previous, kept_lives = stored, first, lives
        else
          -- The index of now's window in the state's own duration: the
          -- limit's, read above, when the state holds it as the limit
          -- gives it.
          local at, window_was = index, (now - offset) / duration
          if was == seconds then
            was = duration
          else
            was = was * 1000000
            window_was = math.floor(now / was)
            at = window_was - math.floor(EPOCH_US / was)
          end
          readable = was > 0 and (read_index - at) * was <= now - window_was * was + SKEW_US
          if not readable then
            ends = ''
          elseif was ~= duration then
            -- A named limit's window changed: what the old window still
            -- counts counts in the new one's current window.
            if read_index == at then
              current = first + second
            elseif read_index == at - 1 then
              current = second + 0
            end
            if current > 0 then
              moved = moved or {}
              moved[i] = true
            end
          elseif read_index == index then
            -- Of this window, the duration written otherwise ("060").
            previous, current = first + 0, second + 0
            kept_previous = previous
          elseif read_index == index - 1 then
            previous = second + 0
            kept_previous = previous
          end
        end
      end
      if not readable then
        unreadable = unreadable or {}
        unreadable[#unreadable + 1] = i
        ends = ''
      end
    end
  end
  -- A hit writes the counts as read. Without a previous count, a cost that
  -- fits in the current window's is admitted, and there is nothing to
  -- weigh (cost > limit is a case of current + cost > limit).
  local counted = current
  local status, retry_after, steps, weighted = 1, 0, duration, 0
  if current + cost > limit or previous > 0 then
    -- The arithmetic weighs no more than a full window, which keeps every
    -- product within BOUND. limit * duration / BOUND, exact as BOUND is a
    -- power of two, passes 1 only for limits of more than 2^52 units of
    -- weight per window.
    previous = previous < limit and previous or limit
    current = current < limit and current or limit
    local unit, elapsed = 1, offset
    local over = limit * duration / BOUND
    if over > 1 then
      unit = 10
      while over > unit and unit < 1000000 do
        unit = unit * 10
      end
      steps, elapsed = duration / unit, (offset - offset % unit) / unit
    end
    weighted = previous * (steps - elapsed)
    if cost > limit then
      status, admitted = -1, false
    elseif current + cost > limit
        or weighted + (current + cost) * steps > limit * steps then
      status, admitted = 0, false
      -- The estimate only falls as time passes: the hit fits from the first
      -- step of this window at which previous, decaying, leaves room for
      -- the cost, or else of the next (where current weighs as previous
      -- did), or, failing both, from the start of the one after. A count of
      -- weight leaves room for room units from the step steps - free, free
      -- = floor(room * steps / weight), when free >= 1.
      local step = nil
      if current + cost <= limit then
        if previous == 0 then
          step = 0
        else
          local free = math.floor((limit - current - cost) * steps / previous)
          if free >= steps then
            step = 0
          elseif free >= 1 then
            step = steps - free
          end
        end
      end
      if step then
        retry_after = step * unit - offset
      else
        if current == 0 then
          step = 0
        else
          local free = math.floor((limit - cost) * steps / current)
          if free >= steps then
            step = 0
          elseif free >= 1 then
            step = steps - free
          end
        end
        if step then
          retry_after = duration + step * unit - offset
        else
          retry_after = lives
        end
      end
    end
  end
  local base = 5 * i - 5
  reply[base + 1] = status
  reply[base + 2] = limit
  local left = limit - current
  if weighted > 0 then
    local part = weighted % steps
    left = left - (weighted - part) / steps - (part > 0 and 1 or 0)
  end
  reply[base + 3] = left > 0 and left or 0
  if current > 0 then
    reply[base + 4] = lives
  elseif previous > 0 then
    reply[base + 4] = lives - duration
  else
    reply[base + 4] = 0
  end
  reply[base + 5] = retry_after
  -- Most limits have no penalty, sent as "0": nothing to read then.
  local penalty = ARGV[PENALTIES + i]
  if penalty ~= '0' and status ~= -1 then
    penalty = penalty + 0
    local left = ends and ends ~= '' and ends - now or 0
    if left <= 0 or left > penalty + SKEW_US then
      left = 0
      if consume and status == 0 then
        left = penalty
        started = started or {}
        started[i] = true
      end
    end
    if left > 0 then
      reply[base + 1], admitted = 0, false
      penalised = penalised or {}
      penalised[i] = now + left
    end
  end
  if consume then
    if kept_lives > 0 and counted > 0 and reply[base + 1] == 1 then
      -- Concatenated, as the strings read, with the count alone
      -- formatted: for less than string.format costs with more to do,
      -- and less than %.14g, with which Lua writes a number, costs.
      states[i] = kept_index .. ':' .. kept_previous .. ':' .. format('%d', counted + cost)
        .. ':' .. seconds
    else
      rare = rare or {}
      local c = 4 * i
      rare[c - 3], rare[c - 2], rare[c - 1], rare[c] = kept_index, kept_previous, counted,
        kept_lives
    end
  end
end

-- Most hits are admitted by every limit, each of which made its state
-- above, in up to three limits of one hash: they spend the cost, and one
-- HSET writes them with no loop over the limits. The hash lives long
-- enough, and no penalty is running.
if consume and admitted and not rare and whole and n <= 3 then
  reply[3] = reply[3] - cost
  if n == 1 then
    redis.call('HSET', KEYS[1], ARGV[FIELDS + 1], states[1])
  elseif n == 2 then
    reply[8] = reply[8] - cost
    redis.call('HSET', KEYS[1], ARGV[FIELDS + 1], states[1], ARGV[FIELDS + 2], states[2])
  else
    reply[8], reply[13] = reply[8] - cost, reply[13] - cost
    redis.call('HSET', KEYS[1], ARGV[FIELDS + 1], states[1], ARGV[FIELDS + 2], states[2],
      ARGV[FIELDS + 3], states[3])
  end
  return reply
end
-- A denied hit still writes a state it moved to a new duration: it counts
-- nothing.
local each = ARGV[FIELDS + n + 1] == 'each'
if consume and (admitted or moved or each or started) then
  -- Each run is one HSET, and at most one PTTL and PEXPIRE (see Expiry
  -- above): opened is the longest life a write of the run needs. The
  -- HSET's words wait in locals, for up to three writes, and in a table
  -- beyond.
  local w, opened, words = 0, 0, nil
  local field1, state1, field2, state2, field3, state3
  for i = 1, n do
    local base = 5 * i - 5
    -- Under "each", a limit that admits the hit counts it, whatever the
    -- others say.
    local spends = admitted or (each and reply[base + 1] == 1)
    -- A penalty is kept in the state whenever it is written, and one that
    -- starts writes it.
    local ends = penalised and penalised[i]
    local c = 4 * i
    local lives = rare and rare[c]
    local state = nil
    if not lives then
      -- Made above, with the cost counted; the time until the count
      -- stops weighing is in the reply already.
      if spends then
        state = states[i]
        reply[base + 3] = reply[base + 3] - cost
      end
    elseif spends or (moved and moved[i]) or ends then
      local index, previous, current = rare[c - 3], rare[c - 2], rare[c - 1]
      local kept = lives > 0
      if not kept then
        lives = -lives
        if lives > opened then
          opened = lives
        end
      end
      if spends then
        current = current + cost
        reply[base + 3] = reply[base + 3] - cost
        reply[base + 4] = lives
      end
      if ends then
        state = format('%d:%d:%d:%s:%d', index, previous, current, ARGV[3 + 2 * i], ends)
        if started and started[i] and ends - now > opened then
          opened = ends - now
        end
      elseif kept then
        state = index .. ':' .. previous .. ':' .. format('%d', current) .. ':'
          .. ARGV[3 + 2 * i]
      else
        state = format('%d:%d:%d:%s', index, previous, current, ARGV[3 + 2 * i])
      end
    end
    if state then
      w = w + 1
      if w == 1 then
        field1, state1 = ARGV[FIELDS + i], state
      elseif w == 2 then
        field2, state2 = ARGV[FIELDS + i], state
      elseif w == 3 then
        field3, state3 = ARGV[FIELDS + i], state
      else
        if w == 4 then
          words = {field1, state1, field2, state2, field3, state3}
        end
        words[2 * w - 1], words[2 * w] = ARGV[FIELDS + i], state
      end
    end
    if (i == n or KEYS[i + 1] ~= KEYS[i]) and w > 0 then
      local key = KEYS[i]
      if foreign and foreign[key] then
        redis.call('DEL', key)
        foreign[key] = nil
      end
      if w == 1 then
        redis.call('HSET', key, field1, state1)
      elseif w == 2 then
        redis.call('HSET', key, field1, state1, field2, state2)
      elseif w == 3 then
        redis.call('HSET', key, field1, state1, field2, state2, field3, state3)
      else
        redis.call('HSET', key, unpack(words, 1, 2 * w))
      end
      if opened > 0 then
        -- Milliseconds rounded up; compared with <=, as PTTL rounds a last
        -- partial millisecond up.
        local ms = opened % 1000
        ms = (opened - ms) / 1000 + (ms > 0 and 1 or 0)
        if redis.call('PTTL', key) <= ms then
          redis.call('PEXPIRE', key, ms)
        end
      end
      w, opened = 0, 0
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
