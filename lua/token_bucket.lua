-- luathrottle script: token_bucket
-- version: 7
-- state: 3
-- layout: hash
--
-- TokenBucket: for each limit, the generic cell rate algorithm (GCRA). A
-- bucket holds up to burst tokens and gains one back every emission
-- interval; a hit of cost n takes n tokens when they are there. Every limit
-- must admit the hit, or nothing is written at all;
-- with "each", every limit that admits it counts it.
--
-- Time is kept in whole microseconds so that all arithmetic stays integral:
-- the caller sends interval = ceil(duration_us / max_requests), rounded up
-- so that tokens never come back faster than the rate, and a full bucket is
-- burst * interval of time. The bucket's shortfall is the debt, the time
-- until it is full again: a hit of cost n fits when debt + n * interval <=
-- burst * interval. With burst = max_requests this is LeakyBucket, decision
-- for decision.
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
-- ARGV[4]          burst of every limit: the tokens a full bucket holds,
--                  >= 1; or "" for each limit's max_requests
-- ARGV[3 + 2i]     max_requests of limit i
-- ARGV[4 + 2i]     emission interval of limit i, in microseconds: a
--                  constant of the limit, sent rather than derived from
--                  its duration on every hit
-- ARGV[4 + 2n + i] limit i's penalty in microseconds, 0 for none (see
--                  Penalties below)
-- ARGV[4 + 3n + i] limit i's field in its hash
-- ARGV[5 + 4n]     optional: "each" counts a hit in every limit that
--                  admits it, even when another denies it; absent, a hit
--                  any limit denies counts in none (all or nothing)
--
-- State of a limit, in its field: the theoretical arrival time (TAT), in
-- microseconds since 1970: when the bucket will be full again; then the
-- interval and the burst it was written with (or the tokens it owes, if
-- more), apart by colons ("1800000000000000:600000:100"); then, while the
-- limit holds a penalty, when it ends, in microseconds since 1970
-- (":1800000030000000"). A field outlives its bucket until the hash
-- expires: the state says when its bucket is full, so a stale field reads
-- as a full bucket.
--
-- Expiry. Redis 7.0 keeps no time to live per field, and a PEXPIRE on every
-- hit would add a command or two to each call; so the hash's life is
-- extended by blocks. A state stops mattering at T, its TAT or its
-- penalty's end if later; F is its full bucket, held * interval as the
-- state stores them (burst * interval, unless the bucket owes more). After
-- a write of a state ending at T, the hash expires no earlier than
-- (floor(T / F) + 2) * F, more than F after T. A write needs a longer life
-- only when its field held no readable state, or one of another interval
-- or held, or one whose T lies in another block floor(T / F), or when a
-- hit writes without taking tokens (a converted bucket, a penalty): a hit
-- on a live bucket within its block sends no PTTL nor PEXPIRE. Otherwise
-- the run's hash gets PTTL, and PEXPIRE to the longest life its writes
-- need when it would expire sooner. PEXPIRE never shortens, and a DEL
-- removes every field, so the rule holds for every field of the hash.
--
-- The field names a limit by its name or its window, not by its numbers,
-- so the state is judged against the limit given now. The tokens a bucket
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
-- allow plus SKEW_US from now. So is every field of a key that holds no
-- hash (HMGET answers it with an error). It counts as absent (a full
-- bucket), so a peek writes nothing and the next admitted hit overwrites
-- it (a key of another type is deleted first) with a state whose hash
-- expires; the reply names its limit.
--
-- Penalties: a limit with a penalty that denies a hit (status 0, not a
-- cost above its bucket, and only a hit: a peek writes nothing) writes in
-- its state that it is penalised until now plus the penalty, and until
-- then denies every hit, whatever its bucket holds, with retry_after and
-- reset_after at least the penalty left and remaining 0. A denial during
-- a penalty never lengthens it. The penalty takes nothing: the bucket is
-- kept as it is, and its hash lives at least as long as the penalty. A
-- stored penalty is honoured only while the limit has a penalty, and only
-- when it ends no later than the limit's penalty plus SKEW_US from now:
-- one written under a longer penalty, or by someone else, is ignored.
--
-- Refunds: ARGV as for a hit, then ARGV[4 + 4n + i], limit i's anchor:
-- when the hit being refunded said its bucket is full again, in
-- microseconds since 1970 (its now plus its reset_after_us), or "" for
-- none. A refund gives back cost * interval of the debt, no more than the
-- anchor is still ahead of now (what is left of the hit's own tokens, the
-- last the bucket owes), and never past full; a bucket of another
-- interval, or a state the script cannot read, is left alone. A bucket
-- the refund leaves full, with no penalty to keep, loses its field (HDEL):
-- an absent field is a full bucket. A refund never needs a longer life for
-- the hash: it only brings T sooner. It replies as a peek of cost 1 after
-- the refund.
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
local PENALTIES = 4 + 2 * n
local FIELDS = 4 + 3 * n
local mode = ARGV[1]

-- Limits that share a hash come in runs, and a run ends at limit i when
-- the next limit's hash differs.
if mode == 'reset' then
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

local consume = mode == 'hit'
-- The burst every limit shares, read once; mostly none.
local shared_word, shared = ARGV[4], nil
if shared_word ~= '' then
  shared = shared_word + 0
end
-- Arithmetic reads a numeric string as tonumber does, without a call;
-- most hits cost 1, which needs no conversion.
local cost = ARGV[2]
if cost == '1' then
  cost = 1
else
  cost = cost + 0
end
local now
if ARGV[3] == '' then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
else
  now = ARGV[3] + 0
end

-- A state's parts are matched before any arithmetic, which raises an error
-- on a string that is no number and reads "inf", "0x1f" or " 5" as
-- numbers. Most states hold no penalty: one match reads them.
local match, format = string.match, string.format
local PLAIN, PENALISED = '^(%d+):(%d+):(%d+)$', '^(%d+):(%d+):(%d+):(%d+)$'

-- Refunds only ever lower a bucket's debt: kept apart from the decision
-- below, and reading each field on its own, as they are rare; in a block
-- rather than a function, so that a hit makes no closure for them.
if mode == 'refund' then
  for i = 1, n do
    local interval = ARGV[4 + 2 * i] + 0
    local anchor = tonumber(ARGV[FIELDS + n + i])
    local read = redis.pcall('HMGET', KEYS[i], ARGV[FIELDS + i])
    local state = not read.err and read[1]
    local full_at, was, held, ends
    if state then
      full_at, was, held = match(state, PLAIN)
      ends = ''
      if not full_at then
        full_at, was, held, ends = match(state, PENALISED)
        if ends and #ends > 16 then
          full_at = nil
        end
      end
    end
    if full_at and #full_at <= 16 and #was <= 16 and #held <= 16
        and was + 0 == interval and full_at - now <= held * was + SKEW_US
        and full_at - now > 0 then
      local give = cost * interval
      if anchor then
        give = math.min(give, math.max(anchor - now, 0))
      end
      local debt = math.max(full_at - now - give, 0)
      -- A refund leaves a penalty as it is, and the hash lives as long.
      if debt > 0 or (ends ~= '' and ends - now > 0) then
        redis.call('HSET', KEYS[i], ARGV[FIELDS + i],
          format('%d:%d:%s', now + debt, interval, held)
          .. (ends ~= '' and ':' .. ends or ''))
      else
        redis.call('HDEL', KEYS[i], ARGV[FIELDS + i])
      end
    end
  end
  -- The decision below then reads as a peek of cost 1: consume is false.
  cost = 1
end

-- Each run is one HMGET. A key holding no hash reads as '' for each of its
-- limits, a state no limit can read, and is remembered so that a hit
-- deletes it before writing. Mostly every limit is in one hash: the loops
-- over runs then start at the last limit, which ends the one run.
local start = 1
if n > 1 then
  start = n
  for i = 2, n do
    if KEYS[i] ~= KEYS[1] then
      start = 1
      break
    end
  end
end
local states, foreign = nil, nil
local first = 1
for i = start, n do
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
      states = read
    else
      states = states or {}
      for j = first, i do
        states[j] = read[j - first + 1]
      end
    end
    first = i + 1
  end
end

-- The reply is filled in as the limits are read, so that no table is built
-- per limit. Divisions round exactly for integers below 2^53, by % (or
-- math.ceil and math.floor off the hot path); the algorithm's check_limits
-- keeps burst * interval within 2^52, and a cost above burst is refused
-- before it is multiplied. Unreadable states are rare, so their list is
-- only made when one turns up.
-- A limit that is penalised keeps, in penalised, when its penalty ends;
-- started says whether this hit started one. Only made when a limit has a
-- penalty running.
-- A hit takes the tokens of each limit that admits it while every limit
-- so far has (or under "each"), in the reply and in its new state, kept in
-- writes as the field then the state: when every limit admits, the writes
-- are ready; otherwise the limits before the first that denied
-- (denied_at) give their tokens back, but under "each". opened is the
-- life, in milliseconds, that the run being read needs for its hash, 0
-- for none; lives keeps it at the run's last limit, only made when one
-- needs it. Both tables start with room for a few limits, as a table grown
-- one field at a time is reallocated at every power of two: a constructor
-- of nils sizes a table without filling it, and the reply ends at its
-- last value.
local reply, writes
if n == 1 then
  reply, writes = {nil, nil, nil, nil, nil}, {nil, nil}
else
  reply = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
    nil, nil, nil, nil, nil}
  writes = {nil, nil, nil, nil, nil, nil}
end
local admitted, denied_at, unreadable, moved = true, n + 1, nil, nil
local penalised, started = nil, false
-- taking: this hit takes the tokens of the limit being decided; each is
-- only read once a limit denies.
local taking, each = consume, false
local lives, opened = nil, 0
for i = 1, n do
  -- Each word is read as a number once; the interval and burst as they are
  -- sent are mostly the ones the state holds, compared as strings.
  local k = 2 * i
  local limit_word, interval_word = ARGV[k + 3], ARGV[k + 4]
  local limit, interval = limit_word + 0, interval_word + 0
  local burst, burst_word = limit, limit_word
  if shared then
    burst, burst_word = shared, shared_word
  end
  local full = burst * interval
  local state = states[i]
  -- was keeps the state's interval as written when the new state can
  -- repeat it, and block where the state's T lies, when its F is full.
  local debt, ends, was, block = 0, '', nil, nil
  if state then
    local full_at, step, held = match(state, PLAIN)
    -- Mostly the state is as this limit writes it, with no penalty: its
    -- interval and burst are the words sent, and only its T is read as a
    -- number, into how far it lies ahead of now.
    local ahead = step == interval_word and held == burst_word
      and #full_at <= 16 and full_at - now
    if ahead and ahead <= full + SKEW_US then
      if ahead > 0 then
        debt = ahead
      end
      ahead = now + ahead
      block = ahead - ahead % full
    else
      if not full_at then
        full_at, step, held, ends = match(state, PENALISED)
        if ends and #ends > 16 then
          full_at = nil
        end
      end
      if full_at and #full_at <= 16 and #step <= 16 and #held <= 16 then
        was, full_at, step, held = step, full_at + 0, step + 0, held + 0
      else
        full_at = nil
      end
      if full_at and step > 0 and full_at - now <= held * step + SKEW_US then
        debt = full_at > now and full_at - now or 0
        if step == interval and held == burst then
          if ends ~= '' and ends + 0 > full_at then
            full_at = ends + 0
          end
          block = full_at - full_at % full
        else
          was = nil
          if step ~= interval and debt > 0 then
            debt = math.min(math.ceil(debt / step), math.floor(BOUND / interval))
              * interval
            moved = moved or {}
            moved[i] = true
          end
        end
      else
        unreadable = unreadable or {}
        unreadable[#unreadable + 1] = i
        ends, was = '', nil
      end
    end
  end
  -- after: what the bucket owes once it takes the hit.
  local status, retry_after, after = 1, 0, nil
  if cost > burst then
    status = -1
  else
    after = debt + cost * interval
    if after > full then
      status, retry_after = 0, after - full
    end
  end
  -- Most limits have no penalty, sent as "0": no conversion then.
  local penalty = ARGV[PENALTIES + i]
  if penalty ~= '0' then
    penalty = penalty + 0
    if penalty > 0 and status ~= -1 then
      local left = ends ~= '' and ends - now or 0
      if left <= 0 or left > penalty + SKEW_US then
        left = 0
        if consume and status == 0 then
          left, started = penalty, true
        end
      end
      if left > 0 then
        status = 0
        penalised = penalised or {}
        penalised[i] = now + left
      end
    end
  end
  if status ~= 1 then
    if admitted then
      admitted, denied_at = false, i
      each = ARGV[FIELDS + n + 1] == 'each'
      taking = consume and each
    end
  elseif taking then
    debt = after
    -- Admitted, the bucket owes no more than it holds: held is burst.
    local at = now + debt
    local ends_at = at - at % full
    if ends_at ~= block then
      -- Milliseconds rounded up.
      ends_at = ends_at + 2 * full - now
      local ms = ends_at % 1000
      ms = (ends_at - ms) / 1000 + (ms > 0 and 1 or 0)
      if ms > opened then
        opened = ms
      end
    end
    local w = 2 * i
    writes[w - 1] = ARGV[FIELDS + i]
    writes[w] = format('%d', at) .. ':' .. (was or interval_word) .. ':'
      .. burst_word
  end
  -- Whole hits of cost 1 that fit after this call: none when a lowered
  -- burst leaves the bucket owing more than it holds.
  local remaining = full - debt
  remaining = remaining > 0 and (remaining - remaining % interval) / interval or 0
  local last = 5 * i
  reply[last - 4] = status
  reply[last - 3] = limit
  reply[last - 2] = remaining
  reply[last - 1] = debt
  reply[last] = retry_after
  if opened > 0 and (i == n or KEYS[i + 1] ~= KEYS[i]) then
    lives = lives or {}
    lives[i], opened = opened, 0
  end
end

if consume and admitted then
  -- Each run is one HSET, deleting a key of another type first; a hash
  -- that needs a longer life gets PTTL, and PEXPIRE if it would expire
  -- sooner.
  first = 1
  for i = start, n do
    if i == n or KEYS[i + 1] ~= KEYS[i] then
      local key = KEYS[i]
      if foreign and foreign[key] then
        redis.call('DEL', key)
        foreign[key] = nil
      end
      redis.call('HSET', key, unpack(writes, 2 * first - 1, 2 * i))
      local ms = lives and lives[i]
      -- Compared with <=, as PTTL rounds a last partial millisecond up.
      if ms and redis.call('PTTL', key) <= ms then
        redis.call('PEXPIRE', key, ms)
      end
      first = i + 1
    end
  end
elseif consume then
  -- Denied somewhere: a limit before the first that denied gives its
  -- tokens back, unless it counts the hit under "each". A denied hit still
  -- writes a bucket converted to a new interval (it takes no token), and a
  -- penalty that starts or runs; such a write always gives its hash the
  -- life it needs.
  local words, opened = {}, 0
  for i = 1, n do
    local base = 5 * i - 5
    local ends = penalised and penalised[i]
    local interval, burst = ARGV[4 + 2 * i] + 0, shared or ARGV[3 + 2 * i] + 0
    if each and reply[base + 1] == 1 then
      words[#words + 1] = writes[2 * i - 1]
      words[#words + 1] = writes[2 * i]
    else
      if i < denied_at then
        reply[base + 3] = reply[base + 3] + cost
        reply[base + 4] = reply[base + 4] - cost * interval
      end
      if (moved and moved[i]) or ends then
        local debt = reply[base + 4]
        -- A converted bucket may owe more than burst: the state names what
        -- it owes, the bound its next reader checks.
        local held = burst
        if debt > burst * interval then
          held = math.ceil(debt / interval)
        end
        local at = now + debt
        local state = format('%d:%d:%d', at, interval, held)
        if ends then
          state = state .. format(':%d', ends)
          if ends > at then
            at = ends
          end
        end
        local full = held * interval
        local ms = math.ceil((at - at % full + 2 * full - now) / 1000)
        if ms > opened then
          opened = ms
        end
        words[#words + 1] = ARGV[FIELDS + i]
        words[#words + 1] = state
      end
    end
    if i == n or KEYS[i + 1] ~= KEYS[i] then
      local ms = lives and lives[i] or 0
      if opened > ms then
        ms = opened
      end
      if #words > 0 then
        local key = KEYS[i]
        if foreign and foreign[key] then
          redis.call('DEL', key)
          foreign[key] = nil
        end
        redis.call('HSET', key, unpack(words))
        if ms > 0 and redis.call('PTTL', key) <= ms then
          redis.call('PEXPIRE', key, ms)
        end
        words = {}
      end
      opened = 0
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
