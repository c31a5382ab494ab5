-- luathrottle embedded: memory_keyspace
-- version: 5
--
-- MemoryBackend's keyspace: GET, SET with PX, DEL, PTTL, PEXPIRE, TYPE and
-- DBSIZE over two tables, with lazy expiry, the hash commands the hashed
-- scripts use (HSET, HMGET, HDEL, and HGETALL to look), and the sorted-set
-- commands the concurrency script uses (ZADD, ZREM, ZSCORE, ZCARD, ZRANGE,
-- ZREMRANGEBYSCORE). RPUSH only marks a key as a list, so that a script's
-- GET meets WRONGTYPE there as on Redis. Not an algorithm: it never goes to
-- Redis.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms; the
-- rest is not needed here).
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

local commands, clock, px_ms = ...
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

local cursor = nil
-- A call owes the sweep this many keys for each key it names. It writes at
-- most one key per name, so expired keys are found faster than calls can
-- add keys (at worst half the keyspace, plus one batch, is expired), and a
-- call costs the same however large the keyspace grows. A hashed script
-- names its hash once per limit, one name after another: such a run counts
-- as one name.
local SWEEP_PER_KEY = 2
-- The sweep walks the keyspace with next(), which LuaJIT does not compile:
-- paid at every call, it would take a tenth of a hit. Paid in batches, most
-- calls run on compiled code alone.
local SWEEP_BATCH = 32
local owed = 0

local function expired(key)
  local at = expires[key]
  if at and at <= clock.now then
    data[key], expires[key] = nil, nil
    if types[key] then
      zsets[key], hashes[key], types[key] = nil, nil, nil
    end
    return true
  end
  return false
end

local function sweep(count)
  if cursor ~= nil and expires[cursor] == nil then
    cursor = nil
  end
  for _ = 1, count do
    local key = next(expires, cursor)
    if key == nil then
      cursor = nil
      return
    end
    cursor = key
    expired(key)
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
  expires[key] = nil
  if option ~= nil then
    expires[key] = clock.now + px_ms(option, ttl) * 1000
  end
  return OK
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if not expired(key) and data[key] ~= nil or types[key] then
      deleted = deleted + 1
    end
    data[key], expires[key], types[key], zsets[key] = nil, nil, nil, nil
    hashes[key] = nil
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
    expires[key] = clock.now + ms * 1000
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
-- Redis deletes a hash or a sorted set with its last element.
local function drop(store, key)
  store[key], types[key], expires[key] = nil, nil, nil
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
  if next(hash) == nil then
    drop(hashes, key)
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
local function drop_if_empty(key, set)
  if set.size == 0 then
    drop(zsets, key)
  end
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
  drop_if_empty(key, set)
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
  drop_if_empty(key, set)
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

local INT64 = 2 ^ 63
-- Redis truncates each number of a script's reply into an integer. Doing it
-- here lets Python take the reply as it comes: lupa gives an integral
-- number as a Python int.
local function integers(reply)
  for i = 1, #reply do
    local value = tonumber(reply[i])
    if value == nil or not (value > -INT64 and value < INT64) then
      error('ERR script reply field ' .. i .. ' is no integer: ' ..
        tostring(reply[i]), 0)
    end
    if value >= 0 then
      reply[i] = math.floor(value)
    else
      reply[i] = math.ceil(value)
    end
  end
  return reply
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
