-- luathrottle embedded: staging_keyspace
-- version: 1
--
-- The Django-cache staging keyspace: a script runs over a snapshot of its
-- keys (read with get_many), and what it set or deleted is handed back to be
-- written to the cache. Not an algorithm: it never goes to Redis.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms,
-- call_script).
--
-- Returns one entry point:
--   run_staged(script, clock_us, snapshot, nkeys, KEYS..., ARGV...)
--                   the script's reply table; the keys it set, each to
--                   {value, px_ms or false}; the keys it deleted, to true

local commands, clock, px_ms, call_script = ...
local state

function commands.GET(key)
  local value = state.data[key]
  if value == nil then return false end
  return value
end
function commands.SET(key, value, option, ttl)
  local ms = false
  if option ~= nil then ms = px_ms(option, ttl) end
  state.data[key] = tostring(value)
  state.sets[key], state.dels[key] = {tostring(value), ms}, nil
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if state.data[key] ~= nil then deleted = deleted + 1 end
    state.data[key], state.sets[key], state.dels[key] = nil, nil, true
  end
  return deleted
end

local function run_staged(script, clock_us, snapshot, nkeys, ...)
  clock.now = clock_us
  state = {data = snapshot, sets = {}, dels = {}}
  local reply = call_script(script, nkeys, ...)
  return reply, state.sets, state.dels
end

return run_staged
