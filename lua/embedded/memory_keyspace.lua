-- luathrottle embedded: memory_keyspace
-- version: 1
--
-- MemoryBackend's keyspace: GET, SET with PX, DEL, PTTL and DBSIZE over two
-- tables, with lazy expiry. HSET and RPUSH only mark a key as a hash or a
-- list, so that a script's GET meets WRONGTYPE there as on Redis. Not an
-- algorithm: it never goes to Redis.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms,
-- call_script).
--
-- Returns two entry points:
--   run_script(script, clock_us, nkeys, KEYS..., ARGV...)
--                   the script's reply, unpacked
--   run_command(clock_us, name, args...)
--                   one keyspace command's reply, as redis.call gives it

local commands, clock, px_ms, call_script = ...
local data, expires = {}, {}
-- Keys of another type than string, by name: only their type is kept.
-- Looked up only when data misses, so string keys pay nothing for them.
local types = {}
local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

local cursor = nil
-- A call sweeps this many keys for each key it names. It writes at most one
-- key per name, so expired keys are found faster than calls can add keys (at
-- worst half the keyspace is expired), and a call costs the same however
-- large the keyspace grows.
local SWEEP_PER_KEY = 2

local function expired(key)
  local at = expires[key]
  if at and at <= clock.now then
    data[key], expires[key] = nil, nil
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
local function typed(kind)
  return function(key)
    if data[key] ~= nil and not expired(key) then error(WRONGTYPE, 0) end
    types[key] = kind
    return 1
  end
end
commands.HSET = typed('hash')
commands.RPUSH = typed('list')
function commands.SET(key, value, option, ttl)
  data[key] = tostring(value)
  types[key] = nil
  expires[key] = nil
  if option ~= nil then
    expires[key] = clock.now + px_ms(option, ttl) * 1000
  end
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if not expired(key) and data[key] ~= nil or types[key] then
      deleted = deleted + 1
    end
    data[key], expires[key], types[key] = nil, nil, nil
  end
  return deleted
end
function commands.PTTL(key)
  if types[key] then return -1 end
  if expired(key) or data[key] == nil then return -2 end
  local at = expires[key]
  if at == nil then return -1 end
  return math.floor((at - clock.now + 999) / 1000)
end
function commands.DBSIZE()
  local size = 0
  for _ in pairs(data) do size = size + 1 end
  for _ in pairs(types) do size = size + 1 end
  return size
end

local function run_script(script, clock_us, nkeys, ...)
  clock.now = clock_us
  sweep(SWEEP_PER_KEY * nkeys)
  return unpack(call_script(script, nkeys, ...))
end

local function run_command(clock_us, ...)
  clock.now = clock_us
  return redis.call(...)
end

return run_script, run_command
