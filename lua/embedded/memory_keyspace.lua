-- luathrottle embedded: memory_keyspace
-- version: 1
--
-- MemoryBackend's keyspace: GET, SET with PX, DEL, PTTL and DBSIZE over two
-- tables, with lazy expiry. Not an algorithm: it never goes to Redis.
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
  if expired(key) or data[key] == nil then return false end
  return data[key]
end
function commands.SET(key, value, option, ttl)
  data[key] = tostring(value)
  expires[key] = nil
  if option ~= nil then
    expires[key] = clock.now + px_ms(option, ttl) * 1000
  end
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if not expired(key) and data[key] ~= nil then
      deleted = deleted + 1
    end
    data[key], expires[key] = nil, nil
  end
  return deleted
end
function commands.PTTL(key)
  if expired(key) or data[key] == nil then return -2 end
  local at = expires[key]
  if at == nil then return -1 end
  return math.floor((at - clock.now + 999) / 1000)
end
function commands.DBSIZE()
  local size = 0
  for _ in pairs(data) do size = size + 1 end
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
