-- luathrottle script: token_bucket
-- version: 5
-- state: 2
--
-- TokenBucket: for each limit, the generic cell rate algorithm (GCRA). A
-- bucket holds up to burst tokens and gains one back every emission
-- interval; a hit of cost n takes n tokens when they are there. Every limit
-- must admit the hit, or nothing is written at all;
-- with "each", every limit that admits it counts it.
--
-- Time is kept in whole microseconds so that all arithmetic stays integral:
-- interval = ceil(duration_us / max_requests), rounded up so that tokens
-- never come back faster than the rate, and a full bucket is burst *
-- interval of time. The bucket's shortfall is the debt, the time until it
-- is full again: a hit of cost n fits when debt + n * interval <= burst *
-- interval. With burst = max_requests this is LeakyBucket, decision for
-- decision.
--
-- KEYS[i]          state key of limit i; all keys share one hash tag
-- ARGV[1]          "hit" consumes the cost, "peek" only reads, "refund"
--                  gives the cost back (see Refunds below)
-- ARGV[2]          cost of the hit, an integer >= 1
-- ARGV[3]          now in microseconds, or "" to use the server's TIME
-- ARGV[1 + 3i]     max_requests of limit i
-- ARGV[2 + 3i]     duration of limit i, in seconds
-- ARGV[3 + 3i]     burst of limit i: the tokens a full bucket holds, >= 1
-- ARGV[3 + 3n + i] limit i's penalty in microseconds, 0 for none (see
--                  Penalties below)
-- ARGV[4 + 4n]     optional: "each" counts a hit in every limit that
--                  admits it, even when another denies it; absent, a hit
--                  any limit denies counts in none (all or nothing)
--
-- State of a limit: the theoretical arrival time (TAT), in microseconds
-- since 1970: when the bucket will be full again, expiring then; then the
-- interval and the burst it was written with (or the tokens it owes, if
-- more), apart by colons
-- ("1800000000000000:600000:100"); then, while the limit holds a penalty,
-- when it ends, in microseconds since 1970 (":1800000030000000").
--
-- The key names a limit by its name or its window, not by its numbers, so
-- the state is judged against the limit given now. The tokens a bucket
-- owes carry over a change of interval (of max_requests or, for a named
-- limit, of duration), a part of a token rounded up: debt / old interval
-- tokens, each coming back at the new interval; a hit, admitted or not,
-- writes the bucket so converted, so that its tokens come back at the new
-- interval from then on. A lowered burst clamps
-- the tokens a bucket holds, and a bucket that owes more than it now
-- holds admits nothing until enough come back.
--
-- A state the script cannot read as its own was written by someone else:
-- another format, a bucket full later than its stored burst and interval
-- allow plus SKEW_US from now, or a key of another type (a hash, a list:
-- GET answers it with an error). It counts as absent (a full bucket), so a
-- peek writes nothing and the next admitted hit overwrites it (SET replaces
-- a key of any type) with a state that expires; the reply names its limit.
--
-- Penalties: a limit with a penalty that denies a hit (status 0, not a
-- cost above its bucket, and only a hit: a peek writes nothing) writes in
-- its state that it is penalised until now plus the penalty, and until
-- then denies every hit, whatever its bucket holds, with retry_after and
-- reset_after at least the penalty left and remaining 0. A denial during
-- a penalty never lengthens it. The penalty takes nothing: the bucket is
-- kept as it is, and lives at least as long as the penalty. A stored
-- penalty is honoured only while the limit has a penalty, and only when
-- it ends no later than the limit's penalty plus SKEW_US from now: one
-- written under a longer penalty, or by someone else, is ignored.
--
-- Refunds: ARGV as for a hit, then ARGV[3 + 4n + i], limit i's anchor:
-- when the hit being refunded said its bucket is full again, in
-- microseconds since 1970 (its now plus its reset_after_us), or "" for
-- none. A refund gives back cost * interval of the debt, no more than the
-- anchor is still ahead of now (what is left of the hit's own tokens, the
-- last the bucket owes), and never past full; a bucket of another
-- interval, or a state the script cannot read, is left alone. It replies
-- as a peek of cost 1 after the refund.
--
-- Reply: five integers per limit, in KEYS order:
--   status          1 admits, 0 over the limit, -1 cost above burst
--   limit           max_requests
--   remaining       whole hits of cost 1 that fit after this call
--   reset_after_us  time until the bucket is full
--   retry_after_us  time until this hit would fit (0 when it fits now)
-- then, only when there are any, the index (from 1, in KEYS order) of each
-- limit whose state was unreadable.

-- A bucket may be full this much later than a whole burst from now: the
-- margin lets clients whose clocks (the clock= option) disagree by up to
-- five minutes share buckets.
local SKEW_US = 300000000
-- The longest debt carried to a new interval, 2^52 microseconds (about
-- 142 years): sums with it stay exact below 2^53.
local BOUND = 4503599627370496

local n = #KEYS
local PENALTIES = 3 + 3 * n
local consume = ARGV[1] == 'hit'
-- Arithmetic reads a numeric string as tonumber does, without a call.
local cost = ARGV[2] + 0
local now = ARGV[3] ~= '' and tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end

-- A state's time, step and size, and its penalty's end ('' for none), or
-- nothing when it is not one of ours. Matched before any arithmetic, which
-- raises an error on a string that is no number and reads "inf", "0x1f" or
-- " 5" as numbers.
local match = string.match
local function parse(state)
  local at, was, held = match(state, '^(%d+):(%d+):(%d+)$')
  if at then
    return at, was, held, ''
  end
  local ends
  at, was, held, ends = match(state, '^(%d+):(%d+):(%d+):(%d+)$')
  if ends and #ends <= 16 then
    return at, was, held, ends
  end
end

-- Refunds only ever lower a bucket's debt: kept apart from the decision
-- below, as they are rare; in a block rather than a function, so that a
-- hit makes no closure for them.
if ARGV[1] == 'refund' then
  for i = 1, #KEYS do
    local interval = math.ceil(ARGV[2 + 3 * i] * 1000000 / ARGV[1 + 3 * i])
    local anchor = tonumber(ARGV[3 + 4 * n + i])
    local state = redis.pcall('GET', KEYS[i])
    local full_at, was, held, ends
    if type(state) == 'string' then
      full_at, was, held, ends = parse(state)
    end
    if full_at and #full_at <= 16 and #was <= 16 and #held <= 16
        and was + 0 == interval and full_at - now <= held * was + SKEW_US
        and full_at - now > 0 then
      local give = cost * interval
      if anchor then
        give = math.min(give, math.max(anchor - now, 0))
      end
      local debt = math.max(full_at - now - give, 0)
      -- A refund leaves a penalty as it is, and the bucket lives as long.
      local lives = debt
      if ends ~= '' and ends - now > lives then
        lives = ends - now
      end
      if lives > 0 then
        redis.call('SET', KEYS[i], string.format('%d:%d:%s', now + debt, interval, held)
          .. (ends ~= '' and ':' .. ends or ''), 'PX', math.ceil(lives / 1000))
      else
        redis.call('DEL', KEYS[i])
      end
    end
  end
  -- The decision below then reads as a peek of cost 1: consume is false.
  cost = 1
end

-- The reply is filled in as the limits are read, and the writes read back
-- what they need from it, so that no table is built per limit. Divisions
-- round exactly for integers below 2^53, by math.ceil and math.floor or by %; the
-- algorithm's check_limits keeps burst * interval within 2^52, and a cost
-- above burst is refused before it is multiplied. Unreadable states are
-- rare, so their list is only made when one turns up.
-- A limit that is penalised keeps, in penalised, when its penalty ends;
-- started says whether this hit started one. Only made when a limit has a
-- penalty running. sizes keeps each limit's interval and burst for the
-- writes, two numbers per limit, so that each string is read as a number
-- once. The hot path rounds with % rather than math.floor and math.ceil,
-- and compares rather than call math.max: a call costs more than the
-- arithmetic.
local reply, admitted, unreadable, moved = {0, 0, 0, 0, 0}, true, nil, nil
local penalised, started, sizes = nil, false, {}
for i = 1, #KEYS do
  local limit = ARGV[1 + 3 * i] + 0
  local burst = ARGV[3 + 3 * i] + 0
  local duration = ARGV[2 + 3 * i] * 1000000
  local interval = duration % limit
  interval = (duration - interval) / limit + (interval > 0 and 1 or 0)
  sizes[2 * i - 1], sizes[2 * i] = interval, burst
  -- A key of another type fails GET: pcall gives its error as a table,
  -- which no limit reads, rather than failing the call.
  local state = redis.pcall('GET', KEYS[i])
  local debt, ends = 0, ''
  if state then
    local full_at, was, held
    if type(state) == 'string' then
      -- Most states hold no penalty: one match reads them.
      full_at, was, held = match(state, '^(%d+):(%d+):(%d+)$')
      if not full_at then
        full_at, was, held, ends = parse(state)
      end
    end
    -- Each part is read as a number once, after its digits are counted.
    local readable = full_at and #full_at <= 16 and #was <= 16 and #held <= 16
    if readable then
      full_at, was, held = full_at + 0, was + 0, held + 0
      readable = was > 0 and full_at - now <= held * was + SKEW_US
    end
    if readable then
      debt = full_at > now and full_at - now or 0
      if was ~= interval and debt > 0 then
        debt = math.min(math.ceil(debt / was), math.floor(BOUND / interval))
          * interval
        moved = moved or {}
        moved[i] = true
      end
    else
      unreadable = unreadable or {}
      unreadable[#unreadable + 1] = i
      ends = ''
    end
  end
  local status, retry_after = 1, 0
  if cost > burst then
    status, admitted = -1, false
  elseif debt + cost * interval > burst * interval then
    status, admitted = 0, false
    retry_after = debt + cost * interval - burst * interval
  end
  local base = 5 * (i - 1)
  reply[base + 1] = status
  reply[base + 2] = limit
  -- A bucket whose burst was lowered may owe more than it now holds.
  local room = burst * interval - debt
  reply[base + 3] = room > 0 and (room - room % interval) / interval or 0
  reply[base + 4] = debt
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

-- A denied hit still writes a bucket converted to a new interval: it
-- takes no token.
local each = ARGV[4 + 4 * n] == 'each'
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
      local interval, burst = sizes[2 * i - 1], sizes[2 * i]
      local debt = reply[base + 4]
      if spends then
        debt = debt + cost * interval
        reply[base + 3] = reply[base + 3] - cost
        reply[base + 4] = debt
      end
      -- A converted bucket may owe more than burst: the state names what it
      -- owes, the bound its next reader checks.
      local held = burst
      if debt > burst * interval then
        held = math.ceil(debt / interval)
      end
      local lives = debt
      if ends and ends - now > lives then
        lives = ends - now
      end
      local state
      if ends then
        state = string.format('%d:%d:%d:%d', now + debt, interval, held, ends)
      else
        state = string.format('%d:%d:%d', now + debt, interval, held)
      end
      -- Milliseconds rounded up, sent as a string: Redis turns a number
      -- into one with a costly %.17g.
      local ms = lives % 1000
      ms = (lives - ms) / 1000 + (ms > 0 and 1 or 0)
      redis.call('SET', KEYS[i], state, 'PX', string.format('%d', ms))
    end
  end
end
-- The penalty shows in the reply once the writes have read the buckets.
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
