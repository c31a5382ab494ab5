-- luathrottle embedded: memory_keyspace
-- version: 7
--
-- MemoryBackend's keyspace: GET, SET with PX, DEL, PTTL, PEXPIRE, TYPE and
-- DBSIZE, the hash commands the hashed scripts use (HSET, HMGET, HDEL, and
-- HGETALL to look), and the sorted-set commands the concurrency script uses
-- (ZADD, ZREM, ZSCORE, ZCARD, ZRANGE, ZREMRANGEBYSCORE). RPUSH only marks
-- a key as a list, so that a script's GET meets WRONGTYPE there as on
-- Redis. Not an algorithm: it never goes to Redis.
--
-- An expired key goes when it is read; a sweep finds those nobody reads.
-- Each key with an expiry is filed under a second no later than the one it
-- expires in. Once a second has passed, the sweep takes its keys, deletes
-- the expired ones and files the others (their expiry moved on) under
-- their expiry's second: it meets keys in the order they expire, never
-- walks over live ones, and new keys are filed ahead of it. A filing is
-- its unit of work: a key is filed when it gets an expiry or an earlier
-- one, and by the sweep at most once per write that moved its expiry on;
-- a call writes each key it names once, and pays the sweep for two. So
-- the sweep is never more than a batch behind a second that has passed,
-- unless many keys came due at once (the clock jumped past every TTL);
-- then it takes two of them for each key calls name, as calls add one.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms,
-- integers; the rest is not needed here).
--
-- Returns two entry points:
--   run_script(script, clock_us, argv, KEYS...)
--                   the script's reply, unpacked, each field an integer as
--                   Redis makes it (truncated); a field that is no finite
--                   number within 64 bits raises an error. argv is a table
--                   of the ARGV strings, which Python keeps from call to
--                   call and the script gets as its ARGV: a script must not
--                   change its ARGV, or the change would reach the next call
--                   (no script in lua/ does; test_memory_backend.py checks).
--   run_command(clock_us, name, args...)
--                   one keyspace command's reply, as redis.call gives it

local commands, clock, px_ms, integers = ...
local data, expires = {}, {}
-- Keys of another type than string, by name: only their type is kept.
-- Looked up only when data misses, so string keys pay nothing for them.
local types = {}
-- Sorted sets, by name: {scores = {member = score}, size = n}. Their keys
-- are in types too, as 'zset', and expire as strings do.
local zsets = {}
-- Hashes, by name: {field = value}, in types as 'hash', expiring as strings
-- do. An empty hash is deleted, as Redis deletes one.
local hashes = {}
-- SET's status reply, shared: scripts only compare it.
local OK = {ok = 'OK'}
local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

-- The sweep (see the header): the second each key is filed under, the
-- keys filed under each second, and a heap of those seconds. A call owes
-- it SWEEP_PER_KEY keys per key it names; a hashed script names its hash
-- once per limit, one name after another, and such a run counts as one.
local filed, due = {}, {}
local seconds, nseconds = {}, 0
local SWEEP_PER_KEY = 2
-- Paid in batches, so that most calls never enter the sweep at all.
local SWEEP_BATCH = 32
local owed = 0

local function push(second)
  nseconds = nseconds + 1
  local at = nseconds
  while at > 1 and seconds[math.floor(at / 2)] > second do
    seconds[at], at = seconds[math.floor(at / 2)], math.floor(at / 2)
  end
  seconds[at] = second
end
local function pop()
  local last, at, child = seconds[nseconds], 1, 2
  seconds[nseconds], nseconds = nil, nseconds - 1
  while child <= nseconds do
    if child < nseconds and seconds[child + 1] < seconds[child] then
      child = child + 1
    end
    if seconds[child] >= last then break end
    seconds[at], at, child = seconds[child], child, 2 * child
  end
  if nseconds > 0 then seconds[at] = last end
end

local function file(key, at)
  local second = math.floor(at / 1000000)
  local keys = due[second]
  if keys == nil then
    keys = {}
    due[second] = keys
    push(second)
  end
  keys[#keys + 1] = key
  filed[key] = second
end
-- A later expiry leaves a key where it is filed, so that a hit that only
-- moves its key's expiry on files nothing: the sweep refiles it.
local function expire_at(key, at)
  local second = filed[key]
  if second == nil or at < second * 1000000 then
    file(key, at)
  end
  expires[key] = at
end

-- A deleted key's entries stay filed, and the sweep skips them.
local function remove(key)
  data[key], expires[key], filed[key] = nil, nil, nil
  if types[key] then
    zsets[key], hashes[key], types[key] = nil, nil, nil
  end
end

local function expired(key)
  local at = expires[key]
  if at == nil or at > clock.now then return false end
  remove(key)
  return true
end

local function sweep(count)
  local now, current = clock.now, math.floor(clock.now / 1000000)
  for _ = 1, count do
    local second = seconds[1]
    if second == nil or second >= current then return end
    local keys = due[second]
    local size = #keys
    local key = keys[size]
    keys[size] = nil
    if size == 1 then
      due[second] = nil
      pop()
    end
    local at = filed[key] == second and expires[key]
    if at and at <= now then
      remove(key)
    elseif at then
      file(key, at)
    end
  end
end

function commands.GET(key)
  if expired(key) or data[key] == nil then
    if types[key] then error(WRONGTYPE, 0) end
    return false
  end
  return data[key]
end
function commands.RPUSH(key)
  if data[key] ~= nil and not expired(key) then error(WRONGTYPE, 0) end
  if types[key] and types[key] ~= 'list' then error(WRONGTYPE, 0) end
  types[key] = 'list'
  return 1
end
function commands.SET(key, value, option, ttl)
  data[key] = tostring(value)
  types[key], zsets[key], hashes[key] = nil, nil, nil
  if option == nil then
    expires[key], filed[key] = nil, nil
  else
    expire_at(key, clock.now + px_ms(option, ttl) * 1000)
  end
  return OK
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if not expired(key) and data[key] ~= nil or types[key] then
      deleted = deleted + 1
    end
    remove(key)
  end
  return deleted
end
function commands.PTTL(key)
  if expired(key) or (data[key] == nil and not types[key]) then return -2 end
  local at = expires[key]
  if at == nil then return -1 end
  return math.floor((at - clock.now + 999) / 1000)
end
function commands.PEXPIRE(key, ms)
  ms = tonumber(ms)
  if ms == nil then error('ERR value is not an integer or out of range', 0) end
  if expired(key) or (data[key] == nil and not types[key]) then return 0 end
  if ms <= 0 then
    commands.DEL(key)
  else
    expire_at(key, clock.now + ms * 1000)
  end
  return 1
end
function commands.TYPE(key)
  if expired(key) or (data[key] == nil and not types[key]) then
    return {ok = 'none'}
  end
  return {ok = types[key] or 'string'}
end

-- The hash or sorted set at key, from store (hashes or zsets), whose TYPE
-- is kind, or nil when there is none (and a new one from new when given);
-- WRONGTYPE when the key holds something else.
local function collection_of(store, kind, key, new)
  expired(key)
  local found = store[key]
  if found then return found end
  if data[key] ~= nil or types[key] then error(WRONGTYPE, 0) end
  if new then
    found = new()
    store[key], types[key] = found, kind
  end
  return found
end

local function new_hash() return {} end
local function hash_of(key, create)
  return collection_of(hashes, 'hash', key, create and new_hash)
end
function commands.HSET(key, ...)
  -- The words are read with select rather than put in a table: a hit's
  -- HSET and HMGET would make one each.
  local words = select('#', ...)
  if words == 0 or words % 2 ~= 0 then
    error("ERR wrong number of arguments for 'hset' command", 0)
  end
  local hash = hash_of(key, true)
  local added = 0
  for i = 1, words, 2 do
    local field, value = select(i, ...)
    field = tostring(field)
    if hash[field] == nil then added = added + 1 end
    hash[field] = tostring(value)
  end
  return added
end
function commands.HMGET(key, ...)
  local hash = hash_of(key, false)
  local reply = {}
  for i = 1, select('#', ...) do
    local value = hash and hash[tostring((select(i, ...)))]
    if value == nil then value = false end
    reply[i] = value
  end
  return reply
end
function commands.HDEL(key, ...)
  local hash = hash_of(key, false)
  if not hash then return 0 end
  local removed = 0
  for _, field in ipairs({...}) do
    field = tostring(field)
    if hash[field] ~= nil then
      hash[field], removed = nil, removed + 1
    end
  end
  -- Redis deletes a hash with its last field.
  if next(hash) == nil then
    remove(key)
  end
  return removed
end
function commands.HGETALL(key)
  local hash = hash_of(key, false)
  local reply = {}
  if not hash then return reply end
  for field, value in pairs(hash) do
    reply[#reply + 1] = field
    reply[#reply + 1] = value
  end
  return reply
end

local function new_zset() return {scores = {}, size = 0} end
local function zset_of(key, create)
  return collection_of(zsets, 'zset', key, create and new_zset)
end
local function score_of(text)
  local value = tonumber(text)
  if value == nil or value ~= value then
    error('ERR value is not a valid float', 0)
  end
  return value
end
-- A ZRANGEBYSCORE bound: '-inf', '+inf', a number, or '(' and a number for
-- an exclusive one.
local function bound_of(text)
  text = tostring(text)
  if string.sub(text, 1, 1) == '(' then
    return score_of(string.sub(text, 2)), true
  end
  return score_of(text), false
end
local function format_score(value)
  if value == math.huge then return 'inf' end
  if value == -math.huge then return '-inf' end
  return string.format('%.17g', value)
end
-- Members ordered as Redis orders them: by score, then by member.
local function ordered(set)
  local members = {}
  for member in pairs(set.scores) do members[#members + 1] = member end
  table.sort(members, function(a, b)
    local sa, sb = set.scores[a], set.scores[b]
    if sa ~= sb then return sa < sb end
    return a < b
  end)
  return members
end

function commands.ZADD(key, ...)
  local pairs_ = {...}
  if #pairs_ == 0 or #pairs_ % 2 ~= 0 then
    error('ERR memory backend supports only ZADD key score member ' ..
      '[score member ...]', 0)
  end
  for i = 1, #pairs_, 2 do score_of(pairs_[i]) end
  local set = zset_of(key, true)
  local added = 0
  for i = 1, #pairs_, 2 do
    local member = tostring(pairs_[i + 1])
    if set.scores[member] == nil then
      added, set.size = added + 1, set.size + 1
    end
    set.scores[member] = score_of(pairs_[i])
  end
  return added
end
function commands.ZREM(key, ...)
  local set = zset_of(key, false)
  if not set then return 0 end
  local removed = 0
  for _, member in ipairs({...}) do
    member = tostring(member)
    if set.scores[member] ~= nil then
      set.scores[member] = nil
      removed, set.size = removed + 1, set.size - 1
    end
  end
  -- Redis deletes a sorted set with its last member.
  if set.size == 0 then remove(key) end
  return removed
end
function commands.ZSCORE(key, member)
  local set = zset_of(key, false)
  local score = set and set.scores[tostring(member)]
  if score == nil then return false end
  return format_score(score)
end
function commands.ZCARD(key)
  local set = zset_of(key, false)
  return set and set.size or 0
end
function commands.ZREMRANGEBYSCORE(key, min, max)
  local low, low_open = bound_of(min)
  local high, high_open = bound_of(max)
  local set = zset_of(key, false)
  if not set then return 0 end
  local removed = 0
  for member, score in pairs(set.scores) do
    if (score > low or (score == low and not low_open))
      and (score < high or (score == high and not high_open)) then
      set.scores[member] = nil
      removed, set.size = removed + 1, set.size - 1
    end
  end
  -- Redis deletes a sorted set with its last member.
  if set.size == 0 then remove(key) end
  return removed
end
function commands.ZRANGE(key, start, stop, option)
  local withscores = option ~= nil and string.upper(option) == 'WITHSCORES'
  if option ~= nil and not withscores then
    error('ERR memory backend supports only ZRANGE key start stop [WITHSCORES]', 0)
  end
  start, stop = tonumber(start), tonumber(stop)
  if start == nil or stop == nil then
    error('ERR value is not an integer or out of range', 0)
  end
  local set = zset_of(key, false)
  local reply = {}
  if not set then return reply end
  local members = ordered(set)
  local size = #members
  if start < 0 then start = math.max(size + start, 0) end
  if stop < 0 then stop = size + stop end
  stop = math.min(stop, size - 1)
  for i = start, stop do
    local member = members[i + 1]
    reply[#reply + 1] = member
    if withscores then reply[#reply + 1] = format_score(set.scores[member]) end
  end
  return reply
end
function commands.DBSIZE()
  local size = 0
  for _ in pairs(data) do size = size + 1 end
  for _ in pairs(types) do size = size + 1 end
  return size
end

-- Calls run one at a time, but each reads its time before it waits for
-- the runtime's lock, so a call may come in with an earlier time than the
-- one before it. Time here never goes back, as a server's TIME, read inside
-- its one-at-a-time scripts, does not.
local function advance(clock_us)
  if clock_us > clock.now then
    clock.now = clock_us
  end
end

local function run_script(script, clock_us, argv, ...)
  advance(clock_us)
  local keys = {...}
  local names = 0
  for i = 1, #keys do
    if keys[i] ~= keys[i - 1] then names = names + 1 end
  end
  owed = owed + SWEEP_PER_KEY * names
  if owed >= SWEEP_BATCH then
    sweep(owed)
    owed = 0
  end
  return unpack(integers(script(keys, argv)))
end

local function run_command(clock_us, ...)
  advance(clock_us)
  return redis.call(...)
end

return run_script, run_command
