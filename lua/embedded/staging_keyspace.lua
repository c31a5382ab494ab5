-- luathrottle embedded: staging_keyspace
-- version: 2
--
-- The Django-cache staging keyspace: a script runs over a snapshot of its
-- keys (read with get_many), and what it set or deleted is handed back to be
-- written to the cache. Not an algorithm: it never goes to Redis.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms,
-- call_script).
--
-- Returns one entry point:
--   run_staged(script, clock_us, nkeys, VALUES..., KEYS..., ARGV...)
--                   VALUES is the snapshot: each key's value, or nil when
--                   the cache has none. Returns one flat list, so that
--                   Python reads it in one crossing: n, the reply's n
--                   elements; m, then for each of the m keys it set: key,
--                   value, px_ms or false; then the keys it deleted.

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

local function run_staged(script, clock_us, nkeys, ...)
  clock.now = clock_us
  -- A table of the varargs keeps the positions of nil values.
  local given, data = {...}, {}
  for i = 1, nkeys do data[given[nkeys + i]] = given[i] end
  state = {data = data, sets = {}, dels = {}}
  local reply = call_script(script, nkeys, select(nkeys + 1, ...))
  local count = #reply
  local out = {count, unpack(reply, 1, count)}
  local at = count + 2
  local nsets = at
  out[nsets] = 0
  for key, entry in pairs(state.sets) do
    out[at + 1], out[at + 2], out[at + 3] = key, entry[1], entry[2]
    at = at + 3
    out[nsets] = out[nsets] + 1
  end
  for key in pairs(state.dels) do
    at = at + 1
    out[at] = key
  end
  return unpack(out, 1, at)
end

return run_staged
