-- luathrottle script: leaky_bucket
-- version: 8
-- state: 4
-- layout: hash
--
-- LeakyBucket: for each limit, a bucket that holds up to max_requests units
-- and drains continuously at max_requests units per duration. A hit pours
-- its cost in when it fits. Every limit must admit the hit, or nothing is
-- written at all; with "each", every limit that admits it counts it.
--
-- The level is kept as drain time, in whole microseconds, so that all
-- arithmetic stays integral: one request takes drain = ceil(duration_us /
-- max_requests) to leak out, and the bucket holds max_requests * drain.
-- Rounding drain up to a whole microsecond slows the leak by less than one
-- microsecond per request, never faster than the configured rate. The
-- caller sends the drain, worked out once per limit: the script then
-- neither divides for it nor reads a stored drain as a number, as the
-- state holds the very word it was sent.
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
--                  "refund" takes the cost back out (see Refunds below)
-- ARGV[2]          cost of the hit, an integer from 1 to the largest
--                  max_requests plus one (larger costs exceed all limits)
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[2 + 2i]     max_requests of limit i
-- ARGV[3 + 2i]     drain of limit i, in microseconds, in decimal digits
--                  with no zero in front: ceil(duration_us / max_requests)
-- ARGV[3 + 2n + i] limit i's penalty in microseconds, 0 for none (see
--                  Penalties below)
-- ARGV[3 + 3n + i] limit i's field in its hash
-- ARGV[4 + 4n]     optional: "each" counts a hit in every limit that
--                  admits it, even when another denies it; absent, a hit
--                  any limit denies counts in none (all or nothing)
--
-- State of a limit, in its field: the time, in microseconds, at which the
-- bucket will have drained empty; then the drain and the max_requests it
-- was written with (or the requests it holds, if more), apart by colons
-- ("1800000000000000:36000000:100"); then, while the limit holds a
-- penalty, when it ends, in microseconds since 1970 (":1800000030000000").
-- A field outlives its bucket until the hash expires: the state says when
-- the bucket drained, so a stale field reads as an empty bucket.
--
-- Expiry: Redis 7.0 has no time to live per field, so the hash must live
-- as long as the latest state of any of its fields matters: until T, when
-- the bucket is empty or, if later, the penalty ends. Moving the expiry at
-- every hit would cost a command per hit; instead, with full = the bucket
-- of the state written (its drain times the requests it names), a write
-- keeps the hash alive until at least (floor(T / full) + 2) * full, later
-- than T. A hit that leaves T in the same block of full microseconds as the
-- state it read did, written under the same numbers, needs nothing more:
-- the write that put T there made the hash live that long, our PEXPIRE
-- never shortens it (PTTL first) and a DEL takes every field with it. Only
-- a field that had no readable state, or one of another drain or size, or
-- a T in a later block (a penalty's end counts) costs a PTTL, and a
-- PEXPIRE if that is longer: one per run of limits, for the longest. A T
-- in an earlier block (a penalty dropped) needs nothing either. The rare
-- writes of a hit that counts nowhere (a bucket converted to a new drain,
-- a penalty that starts or is kept) always ask, without reading how the
-- state was written. A refund only brings T nearer, under the numbers it
-- read, and never asks.
--
-- The field names a limit by its name or its window, not by max_requests,
-- so the state is judged against the limit given now. The requests in a
-- bucket carry over a change of drain (of max_requests or, for a named
-- limit, of duration), a part of one rounded up: level / old drain
-- requests, each draining at the new drain; a hit, admitted or not, writes
-- the bucket so converted, so that it drains at the new drain from then
-- on. A bucket that holds more than a lowered max_requests admits nothing
-- until it drains below it.
--
-- A state the script cannot read as its own was written by someone else:
-- another format, a bucket that would take longer to drain than a full
-- one of its stored drain and max_requests plus SKEW_US. So is every field
-- of a key that holds no hash. It counts as absent (an empty bucket), so a
-- peek writes nothing and the next admitted hit overwrites it (a key of
-- another type is deleted first); the reply names its limit.
--
-- Penalties: a limit with a penalty that denies a hit (status 0, not a
-- cost above max_requests, and only a hit: a peek writes nothing) writes
-- in its state that it is penalised until now plus the penalty, and
-- until then denies every hit, whatever its bucket holds, with
-- retry_after and reset_after at least the penalty left and remaining 0.
-- A denial during a penalty never lengthens it. The penalty pours nothing
-- in: the bucket is kept as it is, and the hash lives at least as long as
-- the penalty. A stored penalty is honoured only while the limit has a
-- penalty, and only when it ends no later than the limit's penalty plus
-- SKEW_US from now: one written under a longer penalty, or by someone
-- else, is ignored.
--
-- Refunds: ARGV as for a hit, then ARGV[3 + 4n + i], limit i's anchor:
-- when the hit being refunded said its bucket is empty, in microseconds
-- since 1970 (its now plus its reset_after_us), or "" for none. A refund
-- takes cost * drain out of the level, no more than the anchor is still
-- ahead of now (what is left of the hit's own cost, the last in), and
-- never below empty; a bucket of another drain, or a state the script
-- cannot read, is left alone. A bucket so emptied is written as empty
-- (drained at now) rather than deleted, keeping its penalty; a refund only
-- brings the state's end nearer, so it never needs a longer expiry. It
-- replies as a peek of cost 1 after the refund.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above max_requests
--   limit           max_requests
--   remaining       whole requests that fit after this call, at least 0
--   reset_after_us  time until the bucket is empty
--   retry_after_us  time until this hit would fit (0 when it fits now)
-- then, only when there are any, the index (from 1, in KEYS order) of each
-- limit whose state was unreadable.

-- A bucket may drain this much longer than a full one: the margin lets
-- clients whose clocks (the clock= option) disagree by up to five
-- minutes share buckets.
local SKEW_US = 300000000
-- The longest level carried to a new drain, 2^52 microseconds (about 142
-- years): sums with it stay exact below 2^53.
local BOUND = 4503599627370496

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

-- A state is matched before any arithmetic, which raises an error on a
-- string that is no number and reads "inf", "0x1f" or " 5" as numbers.
-- Most states hold no penalty: one match reads them, and only one that
-- fails it is matched again with a penalty's end. Inline rather than a
-- function, so that a call makes no closure.
local match = string.match
local format = string.format

-- Refunds only ever lower a bucket's level: kept apart from the decision
-- below, and reading each field on its own, as they are rare.
if ARGV[1] == 'refund' then
  for i = 1, n do
    local drain = ARGV[3 + 2 * i] + 0
    local anchor = tonumber(ARGV[FIELDS + n + i])
    local read = redis.pcall('HMGET', KEYS[i], ARGV[FIELDS + i])
    local state = not read.err and read[1]
    local empty_at, was, held, ends
    if state then
      empty_at, was, held = match(state, '^(%d+):(%d+):(%d+)$')
      ends = ''
      if not empty_at then
        empty_at, was, held, ends = match(state, '^(%d+):(%d+):(%d+):(%d+)$')
        if not ends or #ends > 16 then
          empty_at = nil
        end
      end
    end
    if empty_at and #empty_at <= 16 and #was <= 16 and #held <= 16
        and was + 0 == drain and empty_at - now <= held * was + SKEW_US
        and empty_at - now > 0 then
      local give = cost * drain
      if anchor then
        give = math.min(give, math.max(anchor - now, 0))
      end
      local level = math.max(empty_at - now - give, 0)
      -- A refund leaves a penalty as it is.
      local kept = ends ~= '' and ':' .. ends or ''
      redis.call('HSET', KEYS[i], ARGV[FIELDS + i],
        format('%d:%d:%s', now + level, drain, held) .. kept)
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
-- all is set back below. The reply is filled in as the limits are read.
-- Both it and the writes are made whole with the first limit's, with room
-- for three limits when there are more than one, as a table grown one
-- field at a time is reallocated at every power of two; the nils hold no
-- value, so each ends at its last. Divisions round exactly for integers
-- below 2^53, by % or by math.ceil and math.floor off the hot path, which
-- compares rather than call math.max: a call costs more than the
-- arithmetic. Unreadable states are rare, so their list is only made when
-- one turns up. A limit that is penalised keeps, in penalised, when its
-- penalty ends; started says whether this hit started one. Only made when
-- a limit has a penalty running.
--
-- writes holds, at 2i - 1 and 2i, limit i's field and the state a hit
-- that counts writes (made by the first limit that admits); needs[i],
-- made only then, the milliseconds its hash must live when that write
-- reaches a later block (see Expiry above), and longest the most of them.
local reply, admitted, unreadable, moved = nil, true, nil, nil
local penalised, started = nil, false
local writes, needs, longest = nil, nil, 0
-- A state of the limit's own numbers is readable when its bucket drains
-- empty no later than a full one after horizon: one subtraction per limit,
-- and exact, as a time near enough to be readable is below 2^53.
local horizon = now + SKEW_US
for i = 1, n do
  -- The words as they are sent, which a state of this limit holds.
  local limit_s, drain_s = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local limit, drain = limit_s + 0, drain_s + 0
  local full = limit * drain
  -- ends: the stored penalty's end, nil for none.
  local level, ends, block_end = 0, nil, 0
  local state = states[i]
  if state then
    -- Most states hold no penalty: one match reads them.
    local empty_at, was, held = match(state, '^(%d+):(%d+):(%d+)$')
    if not empty_at then
      empty_at, was, held, ends = match(state, '^(%d+):(%d+):(%d+):(%d+)$')
      if ends and #ends > 16 then
        empty_at, was, ends = nil, nil, nil
      end
    end
    -- Each part is read as a number at most once. empty_at needs no count
    -- of its digits: more than 16 make a time far beyond the bound it is
    -- held to (or one with zeros in front, as exact as without).
    local readable = false
    if was == drain_s and held == limit_s then
      -- Mostly a state holds the limit's own drain and max_requests, the
      -- very ARGV words: compared as strings, with no conversion. Its hash
      -- then lives until the block after its T's ends.
      empty_at = empty_at + 0
      if empty_at - full <= horizon then
        readable = true
        if empty_at > now then
          level = empty_at - now
        end
        local last = empty_at
        if ends and ends + 0 > last then
          last = ends + 0
        end
        block_end = last - last % full + full
      end
    elseif empty_at and #was <= 16 and #held <= 16 and was + 0 > 0 then
      -- Other numbers, of at most 16 digits each, so that each reads
      -- exactly. Their product rounds only above 2^53 microseconds (285
      -- years), where the bound it makes admits every time near now alike.
      empty_at, was = empty_at + 0, was + 0
      local written = held * was
      if empty_at - now <= written + SKEW_US then
        readable = true
        if empty_at > now then
          level = empty_at - now
        end
        if written == full then
          local last = empty_at
          if ends and ends + 0 > last then
            last = ends + 0
          end
          block_end = last - last % full + full
        end
        if was ~= drain and level > 0 then
          level = math.min(math.ceil(level / was), math.floor(BOUND / drain)) * drain
          moved = moved or {}
          moved[i] = true
        end
      end
    end
    if not readable then
      unreadable = unreadable or {}
      unreadable[#unreadable + 1] = i
      ends = nil
    end
  end
  local status, retry_after, spend = 1, 0, cost * drain
  local room = full - level
  if cost > limit then
    status, admitted = -1, false
  elseif spend > room then
    status, admitted = 0, false
    retry_after = spend - room
  end
  -- Most limits have no penalty, sent as "0": no conversion then.
  local penalty = ARGV[PENALTIES + i]
  if penalty ~= '0' and status ~= -1 and penalty + 0 > 0 then
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
      penalised[i] = now + left
    end
  end
  if consume and status == 1 then
    -- A hit that fits leaves at most a full bucket: held is the limit. Only
    -- the time is printed; the rest are the ARGV words.
    level, room = level + spend, room - spend
    local last = now + level
    local write = format('%d:', last) .. drain_s .. ':' .. limit_s
    if writes then
      writes[2 * i - 1], writes[2 * i] = ARGV[FIELDS + i], write
    elseif i > 1 then
      writes = {[2 * i - 1] = ARGV[FIELDS + i], [2 * i] = write}
    elseif n == 1 then
      writes = {ARGV[FIELDS + 1], write}
    else
      writes = {ARGV[FIELDS + 1], write, nil, nil, nil, nil}
    end
    if last >= block_end then
      -- Milliseconds rounded up, to the end of the block after T's.
      local us = last - last % full + 2 * full - now
      local ms = us % 1000
      ms = (us - ms) / 1000 + (ms > 0 and 1 or 0)
      needs = needs or {}
      needs[i] = ms
      if ms > longest then
        longest = ms
      end
    end
  end
  local remaining = room > 0 and (room - room % drain) / drain or 0
  if reply then
    local base = 5 * i - 5
    reply[base + 1], reply[base + 2], reply[base + 3] = status, limit, remaining
    reply[base + 4], reply[base + 5] = level, retry_after
  elseif n == 1 then
    reply = {status, limit, remaining, level, retry_after}
  else
    reply = {status, limit, remaining, level, retry_after,
      nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
  end
end

if consume and admitted and single then
  -- The common case: every limit counts the hit, in one hash.
  local key = KEYS[1]
  if foreign then
    redis.call('DEL', key)
  end
  redis.call('HSET', key, unpack(writes))
  -- Compared with <=, as PTTL rounds a last partial millisecond up; a
  -- hash without an expiry (-1) is given one.
  if longest > 0 and redis.call('PTTL', key) <= longest then
    redis.call('PEXPIRE', key, longest)
  end
elseif consume then
  -- Each run is one HSET, and at most one PTTL and PEXPIRE, for the
  -- longest life it needs. A denied hit still writes a bucket converted to
  -- a new drain, and a penalty that starts: neither pours anything in, and
  -- both extend the hash to the block rule without asking how it was
  -- written, as they are rare. Otherwise a hit that counts nowhere writes
  -- nothing.
  local each = ARGV[FIELDS + n + 1] == 'each'
  local writing = admitted or moved or each or started
  local run, w, most = {}, 0, 0
  for i = 1, n do
    local base = 5 * i - 5
    -- Under "each", a limit that admits the hit counts it, whatever the
    -- others say.
    if admitted or (each and reply[base + 1] == 1) then
      run[w + 1], run[w + 2] = writes[2 * i - 1], writes[2 * i]
      w = w + 2
      local ms = needs and needs[i]
      if ms and ms > most then
        most = ms
      end
    else
      local ends = penalised and penalised[i]
      local limit, drain = reply[base + 2], ARGV[3 + 2 * i] + 0
      local full = limit * drain
      if reply[base + 1] == 1 then
        -- It admitted the hit, which counts nowhere: as it was.
        local level = reply[base + 4] - cost * drain
        local room = full - level
        reply[base + 3] = (room - room % drain) / drain
        reply[base + 4] = level
      end
      -- A penalty is kept in the state whenever it is written, and one
      -- that starts writes it.
      if writing and ((moved and moved[i]) or ends) then
        local level = reply[base + 4]
        -- A converted bucket may hold more than max_requests: the state
        -- names what it holds, the bound its next reader checks.
        local held = limit
        if level > full then
          held = math.ceil(level / drain)
          full = held * drain
        end
        local last = now + level
        run[w + 1] = ARGV[FIELDS + i]
        if ends then
          run[w + 2] = format('%d:%d:%d:%d', last, drain, held, ends)
          last = math.max(last, ends)
        else
          run[w + 2] = format('%d:%d:%d', last, drain, held)
        end
        w = w + 2
        local ms = math.ceil((last - last % full + 2 * full - now) / 1000)
        if ms > most then
          most = ms
        end
      end
    end
    if (i == n or KEYS[i + 1] ~= KEYS[i]) and w > 0 then
      local key = KEYS[i]
      if foreign and foreign[key] then
        redis.call('DEL', key)
        foreign[key] = nil
      end
      redis.call('HSET', key, unpack(run))
      if most > 0 and redis.call('PTTL', key) <= most then
        redis.call('PEXPIRE', key, most)
      end
      if i < n then
        run, w, most = {}, 0, 0
      end
    end
  end
end
-- The penalty shows in the reply once the writes have read the buckets.
if penalised then
  for i = 1, n do
    local ends = penalised[i]
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
