-- luathrottle script: fixed_window
-- version: 12
-- state: 6
-- layout: hash
--
-- SimpleRate: for each limit, a fixed window that opens at the first
-- admitted hit and admits at most max_requests units of cost until it ends.
-- Every limit must admit the hit, or nothing is written at all; with
-- "each", every limit that admits it counts it.
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
-- ARGV[2]          cost of the hit, an integer from 1 to the largest
--                  max_requests plus one (larger costs exceed all limits)
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
-- State of a limit, in its field: when its window ends, in milliseconds
-- since 1970, the count, and the window's duration in seconds, apart by
-- colons ("1800000000000:3:60": 3 hits in a minute that ends 2027-01-15
-- 08:00 UTC), then, while the limit holds a penalty, when it ends, in
-- microseconds since 1970 (":1800000030000000"). A field outlives its
-- window until the hash expires, which is when the last window or penalty
-- of any of its fields ends: the state says when its window ended, so a
-- stale field reads as unused.
--
-- The field names a limit by its name or its window, not by max_requests,
-- so the state is judged against the limit given now: a count above a
-- lowered max_requests admits nothing until its window ends. A named limit
-- whose duration changed keeps its count too, in a window that ends when
-- its stored one does, or a new duration from now if that is sooner; a
-- hit, admitted or not, writes the window so shortened, so that it ends
-- then.
--
-- A state the script cannot read as its own was written by someone else:
-- another format (anything but three runs of digits apart by colons), a
-- count of more than 16 digits, or a window ending more than its stored
-- duration plus SKEW_US after now. So is every field of a key that holds
-- no hash. It counts as absent, so the next admitted hit overwrites it (a
-- key of another type is deleted first), and the reply names its limit.
--
-- Penalties: a limit with a penalty that denies a hit (status 0, not a
-- cost above max_requests, and only a hit: a peek writes nothing) writes
-- in its state that it is penalised until now plus the penalty, and
-- until then denies every hit, whatever its count, with retry_after and
-- reset_after at least the penalty left and remaining 0. A denial during
-- a penalty never lengthens it. The penalty counts nothing: the window
-- and its count are kept as they are. A stored penalty is honoured only
-- while the limit has a penalty, and only when it ends no later than the
-- limit's penalty plus SKEW_US from now: one written under a longer
-- penalty, or by someone else, is ignored.
--
-- Refunds: ARGV as for a hit, then ARGV[3 + 4n + i], limit i's anchor:
-- when the hit being refunded said its window ends, in microseconds since
-- 1970 (its now plus its reset_after_us), or "" for the current window. A
-- refund takes the cost off the count of a live window that is the
-- anchor's (its end less than half a stored duration from the anchor),
-- never below 0, and keeps when the window ends; a window that ended or
-- is another's, or a state the script cannot read, is left alone. It
-- replies as a peek of cost 1 after the refund.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       units left in the window after this call, at least 0
--   reset_after_us  time until the whole quota is back (0 when unused)
--   retry_after_us  time until this hit would fit (0 when it fits now)
-- then, only when there are any, the index (from 1, in KEYS order) of each
-- limit whose state was unreadable.

-- A window may end this much beyond now plus its duration: the margin lets
-- clients whose clocks (the clock= option) disagree by up to five
-- minutes share windows.
local SKEW_US = 300000000
-- KEYS and ARGV are read several times per limit: as locals they are
-- registers, where each read of a global looks its name up in a table.
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
-- Arithmetic reads a numeric string as tonumber does, without a call;
-- most hits cost 1, which needs no conversion.
local cost = ARGV[2] == '1' and 1 or ARGV[2] + 0
local now
if ARGV[3] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = ARGV[3] + 0
end

-- A state is three runs of digits apart by colons, or four while it holds
-- a penalty; no arithmetic before the match, which raises an error on a
-- string that is no number and reads "inf", "0x1f" or " 5" as numbers.
local match = string.match
local PLAIN = '^(%d+):(%d+):(%d+)$'
local PENALISED = '^(%d+):(%d+):(%d+):(%d+)$'
-- Most states are as a hit writes them, with no leading zero: a hit may
-- then write a live window's end back as it read it, as a hit would.
local WRITTEN = '^([1-9]%d*):(%d+):(%d+)$'

-- Refunds only ever lower a live window's count: kept apart from the
-- decision below, and reading each field on its own, as they are rare.
if ARGV[1] == 'refund' then
  for i = 1, n do
    local read = redis.pcall('HMGET', KEYS[i], ARGV[FIELDS + i])
    local state = not read.err and read[1]
    local window_ms, used, stored, ends
    if state then
      window_ms, used, stored = match(state, PLAIN)
      if not window_ms then
        window_ms, used, stored, ends = match(state, PENALISED)
      end
    end
    if window_ms and #used <= 16 and #stored <= 9 and (not ends or #ends <= 16) then
      local window_end, duration = window_ms * 1000, stored * 1000000
      local anchor = tonumber(ARGV[FIELDS + n + i])
      if window_end > now and window_end <= now + duration + SKEW_US
          and (not anchor or math.abs(window_end - anchor) * 2 < duration) then
        -- A refund leaves a penalty as it is.
        local kept = ends and ':' .. ends or ''
        redis.call('HSET', KEYS[i], ARGV[FIELDS + i], string.format('%s:%d:%s',
          window_ms, math.max(used - cost, 0), stored) .. kept)
      end
    end
  end
  -- The decision below then reads as a peek of cost 1: consume is false.
  cost = 1
end

-- Each run is one HMGET. A key holding no hash reads as '' for each of its
-- limits, a state no limit can read, and is remembered so that a hit
-- deletes it before writing. single: every limit is in one hash, as when
-- they are all one identity's.
local states, foreign, single = nil, nil, false
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
      states, single = read, true
    else
      states = states or {}
      for j = first, i do
        states[j] = read[j - first + 1]
      end
    end
    first = i + 1
  end
end

-- One pass reads, decides and, for a hit, makes each admitting limit's
-- write as if the hit counts, as it mostly does: then the writes are
-- ready, and nothing is read twice. A limit whose hit does not count after
-- all is set back below. The reply is filled in as the limits are read,
-- and made with the first limit's, with room for up to three limits, as a
-- table grown one field at a time is reallocated at every power of two.
-- Unreadable states are rare, so their list is only made when one turns
-- up. A limit that is penalised keeps, in penalised, when its penalty ends
-- and its count, two numbers per limit; started says whether this hit
-- started one. Both only exist when a limit has a penalty running.
--
-- The state a hit that counts writes takes the place of the state read in
-- states[i], which is read no more; opens[i], made only then, holds the
-- microseconds until the window this hit opens in limit i ends, and
-- longest the most of them.
local format = string.format
-- A window that ends by near is within any limit's bound (its duration
-- plus SKEW_US from now, as a limit lasts a second at least), with no
-- duration to convert: a live window of a limit of up to five minutes
-- does, unless a clock ahead of this one's by more than a second opened it.
local near = now + 1000000 + SKEW_US
local reply, admitted, unreadable, moved = nil, true, nil, nil
local penalised, started = nil, false
local opens, longest = nil, 0
for i = 1, n do
  local limit = ARGV[2 * i + 2] + 0
  local given = ARGV[2 * i + 3]
  -- kept: the end of the live window read, in milliseconds, as written.
  local count, reset_after, kept = 0, 0, nil
  local state = states[i]
  local ends
  if state then
    local window_ms, used, stored = match(state, WRITTEN)
    local window_end
    if stored == given and #used <= 16 then
      -- Most states: of the limit's own duration, which is of 9 digits at
      -- most (a limit lasts 10 years at most), and no penalty. A count is
      -- only read from a live window.
      window_end = window_ms * 1000
      if window_end > near and window_end > now + given * 1000000 + SKEW_US then
        window_end = nil
      elseif window_end > now then
        count, reset_after, kept = used + 0, window_end - now, window_ms
      end
    else
      if not window_ms then
        window_ms, used, stored, ends = match(state, PENALISED)
        if not window_ms then
          window_ms, used, stored = match(state, PLAIN)
        elseif #ends > 16 then
          window_ms = nil
        end
      end
      if window_ms and #used <= 16 and #stored <= 9 then
        local duration = given * 1000000
        window_end, used = window_ms * 1000, used + 0
        if stored == given then
          if window_end > now + duration + SKEW_US then
            window_end = nil
          end
        else
          stored = stored * 1000000
          if window_end > now + stored + SKEW_US then
            window_end = nil
          elseif stored ~= duration and window_end > now + duration then
            -- A named limit's window changed: its count stays, for no
            -- longer than a window of the new duration opened now would
            -- last.
            window_end = math.floor((now + duration) / 1000) * 1000
            moved = moved or {}
            moved[i] = used
          end
        end
        if window_end and window_end > now then
          count, reset_after = used, window_end - now
        end
      end
    end
    if not window_end then
      unreadable = unreadable or {}
      unreadable[#unreadable + 1] = i
      ends = nil
    end
  end
  local status, retry_after = 1, 0
  if cost > limit then
    status, admitted = -1, false
  elseif count + cost > limit then
    status, retry_after, admitted = 0, reset_after, false
  end
  -- Most limits have no penalty, sent as "0": no conversion then.
  local penalty = ARGV[PENALTIES + i]
  if penalty ~= '0' and status ~= -1 then
    penalty = penalty + 0
    local left = ends and ends - now or 0
    if left <= 0 or left > penalty + SKEW_US then
      left = 0
      if consume and status == 0 then
        left, started = penalty, true
      end
    end
    if left > 0 then
      status, admitted = 0, false
      penalised = penalised or {}
      penalised[2 * i - 1], penalised[2 * i] = now + left, count
    end
  end
  local remaining
  if consume and status == 1 then
    -- A hit that fits leaves count + cost, at most the limit.
    count = count + cost
    remaining = limit - count
    -- The state ends in the duration as the limit gives it. %d writes a
    -- count exactly below 2^53, and whole milliseconds, as it drops the
    -- fraction of a positive number, so that no call to math.floor is
    -- needed.
    if kept then
      -- Fewer numbers to write: the window ends when it did.
      states[i] = kept .. format(':%d:', count) .. given
    else
      -- Only a live window has time left: otherwise this hit opens one,
      -- ending on a whole millisecond (the remainder, exact for integers,
      -- costs no call to math.floor).
      if reset_after == 0 then
        local until_us = now + given * 1000000
        reset_after = until_us - until_us % 1000 - now
        opens = opens or {}
        opens[i] = reset_after
        if reset_after > longest then
          longest = reset_after
        end
      end
      states[i] = format('%d:%d:', (now + reset_after) / 1000, count) .. given
    end
  else
    -- A comparison rather than math.max: a call costs more than the rest.
    remaining = limit > count and limit - count or 0
  end
  if reply then
    local base = 5 * i - 5
    reply[base + 1], reply[base + 2], reply[base + 3] = status, limit, remaining
    reply[base + 4], reply[base + 5] = reset_after, retry_after
  elseif n == 1 then
    reply = {status, limit, remaining, reset_after, retry_after}
  elseif n == 2 then
    reply = {status, limit, remaining, reset_after, retry_after, 0, 0, 0, 0, 0}
  else
    -- The next two limits overwrite the zeros.
    reply = {status, limit, remaining, reset_after, retry_after, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 0}
  end
end

-- A hash lives until the last window or penalty of any of its fields
-- ends, so it only needs a longer life when a window opens or a penalty
-- is written: then a PTTL, and a PEXPIRE if that is longer.
if consume and admitted and single and n <= 3 and not foreign then
  -- The common case: every limit, of at most three, counts the hit, in
  -- one key that holds a hash; one HSET writes them with no table made.
  local key = KEYS[1]
  if n == 1 then
    redis.call('HSET', key, ARGV[FIELDS + 1], states[1])
  elseif n == 2 then
    redis.call('HSET', key, ARGV[FIELDS + 1], states[1], ARGV[FIELDS + 2], states[2])
  else
    redis.call('HSET', key, ARGV[FIELDS + 1], states[1], ARGV[FIELDS + 2], states[2],
      ARGV[FIELDS + 3], states[3])
  end
  if longest > 0 then
    local ms = math.ceil(longest / 1000)
    -- Compared with <=, as PTTL rounds a last partial millisecond up; a
    -- hash without an expiry (-1) is given one.
    if redis.call('PTTL', key) <= ms then
      redis.call('PEXPIRE', key, ms)
    end
  end
elseif consume then
  -- Each run is one HSET, and at most one PTTL and PEXPIRE, for the
  -- longest life it needs. A denied hit still writes a window it
  -- shortened, and a penalty that starts or is kept: neither counts
  -- anything. Otherwise a hit that counts nowhere writes nothing. A key
  -- of another type is deleted before its run is written.
  local each = ARGV[FIELDS + n + 1] == 'each'
  local writing = admitted or moved or each or started
  local run, w, most = {}, 0, 0
  for i = 1, n do
    local base = 5 * i - 5
    -- Under "each", a limit that admits the hit counts it, whatever the
    -- others say.
    if admitted or (each and reply[base + 1] == 1) then
      run[w + 1], run[w + 2] = ARGV[FIELDS + i], states[i]
      w = w + 2
      local us = opens and opens[i]
      if us and us > most then
        most = us
      end
    else
      if reply[base + 1] == 1 then
        -- It admitted the hit, which counts nowhere: as it was, and a
        -- window it would have opened stays unused.
        reply[base + 3] = reply[base + 3] + cost
        if opens and opens[i] then
          reply[base + 4] = 0
        end
      end
      local count = moved and moved[i]
      local ends = penalised and penalised[2 * i - 1]
      if ends then
        -- A penalty is kept in the state whenever it is written, and one
        -- that starts writes it; the hash lives at least until it ends.
        count = count or penalised[2 * i]
        if ends - now > most then
          most = ends - now
        end
      end
      if writing and count then
        run[w + 1] = ARGV[FIELDS + i]
        local window_ms = (now + reply[base + 4]) / 1000
        if ends then
          run[w + 2] = format('%d:%d:%s:%d', window_ms, count, ARGV[3 + 2 * i], ends)
        else
          run[w + 2] = format('%d:%d:%s', window_ms, count, ARGV[3 + 2 * i])
        end
        w = w + 2
      end
    end
    if i == n or KEYS[i + 1] ~= KEYS[i] then
      if w > 0 then
        local key = KEYS[i]
        if foreign and foreign[key] then
          redis.call('DEL', key)
          foreign[key] = nil
        end
        redis.call('HSET', key, unpack(run, 1, w))
        if most > 0 then
          local ms = math.ceil(most / 1000)
          if redis.call('PTTL', key) <= ms then
            redis.call('PEXPIRE', key, ms)
          end
        end
      end
      w, most = 0, 0
    end
  end
end
-- The penalty shows in the reply once the writes have read the windows.
if penalised then
  for i = 1, n do
    local ends = penalised[2 * i - 1]
    if ends then
      local base, left = 5 * i - 5, ends - now
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
