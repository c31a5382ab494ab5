-- luathrottle embedded: staging_keyspace
-- version: 10
--
-- The Django-cache staging keyspace: a script runs over a snapshot of its
-- keys (read with get_many), and what it set or deleted is handed back to be
-- written to the cache. Not an algorithm: it never goes to Redis.
--
-- The cache keeps a hash as one string, so that it crosses into Lua and
-- back as one value and the cache pickles a few bytes:
--   expiry NUL field NUL value NUL field NUL value NUL ...
-- where expiry is the hash's end in milliseconds since 1970, or empty when
-- it has none: a cache cannot tell a key's time to live, and a script
-- extends a hash's life only when it needs to. No script writes a NUL in a
-- field or a value.
--
-- A snapshot maps a key to such a string (a hash), to {string = value}, or
-- to {foreign = what the cache holds}, a value of another type, which GET
-- and HMGET meet as WRONGTYPE; so does a string that is no hash of this
-- form. GET, SET with PX and DEL work on strings; HSET, HMGET, HDEL, PTTL
-- and PEXPIRE on hashes.
--
-- Chunk arguments: what prelude.lua returns (commands, clock, px_ms,
-- integers; the rest is not needed here).
--
-- Returns one entry point:
--   run_staged(script, clock_us, argv, nkeys, KEYS..., SNAPSHOT...)
--                   argv is a table of the ARGV strings, which Python keeps
--                   from call to call and the script gets as its ARGV (a
--                   script must not change it). SNAPSHOT is, for each key
--                   the cache holds, the key and its value (as above).
--                   Returns one flat list, so that Python reads it in one
--                   crossing: n, the reply's n integers; m, then for each
--                   of the m keys it set: key, its cache timeout in whole
--                   seconds (its PX rounded up) or nil for none, true for a
--                   hash or false for a string, and the value as the cache
--                   keeps it; then the keys it deleted.

local commands, clock, px_ms, integers = ...
local find, sub, format = string.find, string.sub, string.format
-- The call's snapshot, and the keys it set ({value, px_ms}) and deleted.
local data, sets, dels
local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'
-- The latest expiry whose microseconds stay exact as a Lua number.
local MOST_EXPIRES_MS = 9007199254740

local function wrongtype(value)
  error('WRONGTYPE the cache holds a ' .. value.foreign .. ' there', 0)
end

-- The hash a cached string holds (see the header), or nil when it holds no
-- hash of that form.
local function decoded(text)
  local at = find(text, '\0', 1, true)
  if not at then return nil end
  local expires = false
  if at > 1 then
    local head = sub(text, 1, at - 1)
    if find(head, '^%d+$') == nil or at > 14 or tonumber(head) > MOST_EXPIRES_MS then
      return nil
    end
    expires = tonumber(head) * 1000
  end
  local fields, size = {}, #text
  while at < size do
    local field_end = find(text, '\0', at + 1, true)
    local value_end = field_end and find(text, '\0', field_end + 1, true)
    if not value_end then return nil end
    fields[sub(text, at + 1, field_end - 1)] = sub(text, field_end + 1, value_end - 1)
    at = value_end
  end
  return {fields = fields, expires = expires}
end

local function encoded(hash)
  local words, n = {''}, 1
  if hash.expires then words[1] = format('%d', math.ceil(hash.expires / 1000)) end
  for field, value in pairs(hash.fields) do
    words[n + 1], words[n + 2], n = field, value, n + 2
  end
  words[n + 1] = ''
  return table.concat(words, '\0')
end

-- What a hash's expiry leaves of its life, in milliseconds, or false.
local function left_ms(hash)
  if not hash.expires then return false end
  return math.ceil((hash.expires - clock.now) / 1000)
end

local function set_hash(key, hash)
  data[key] = hash
  sets[key], dels[key] = {hash, left_ms(hash)}, nil
end

function commands.GET(key)
  local value = data[key]
  if value == nil then return false end
  if type(value) == 'table' then
    if value.string then return value.string end
    if value.foreign then wrongtype(value) end
  end
  error(WRONGTYPE, 0)
end
function commands.SET(key, value, option, ttl)
  local ms = false
  if option ~= nil then ms = px_ms(option, ttl) end
  data[key] = {string = tostring(value)}
  sets[key], dels[key] = {tostring(value), ms}, nil
  return {ok = 'OK'}
end
function commands.DEL(...)
  local deleted = 0
  for _, key in ipairs({...}) do
    if data[key] ~= nil then deleted = deleted + 1 end
    data[key], sets[key], dels[key] = nil, nil, true
  end
  return deleted
end

-- The hash at key, or nil; WRONGTYPE when the key holds something else.
local function hash_of(key)
  local value = data[key]
  if value == nil then return nil end
  if type(value) == 'string' then
    local hash = decoded(value)
    if hash == nil then error(WRONGTYPE, 0) end
    data[key] = hash
    return hash
  end
  if value.foreign then wrongtype(value) end
  if value.string then error(WRONGTYPE, 0) end
  return value
end
function commands.HMGET(key, ...)
  local hash = hash_of(key)
  local reply = {}
  for i = 1, select('#', ...) do
    local value = hash and hash.fields[(select(i, ...))]
    if value == nil then value = false end
    reply[i] = value
  end
  return reply
end
function commands.HSET(key, ...)
  local hash = hash_of(key) or {fields = {}, expires = false}
  local fields, added = hash.fields, 0
  -- The words are read with select, as HMGET's are, not from a table of
  -- them: with {...}, LuaJIT recorded traces through this loop afresh on
  -- most calls, and a request through three LocMemCache throttles cost
  -- about 107,000 more instructions.
  for i = 1, select('#', ...), 2 do
    local field, value = select(i, ...)
    field = tostring(field)
    if fields[field] == nil then added = added + 1 end
    fields[field] = tostring(value)
  end
  set_hash(key, hash)
  return added
end
function commands.HDEL(key, ...)
  local hash = hash_of(key)
  if not hash then return 0 end
  local removed = 0
  for _, field in ipairs({...}) do
    if hash.fields[field] ~= nil then
      hash.fields[field], removed = nil, removed + 1
    end
  end
  if next(hash.fields) == nil then
    commands.DEL(key)
  elseif removed > 0 then
    set_hash(key, hash)
  end
  return removed
end
function commands.PTTL(key)
  local hash = hash_of(key)
  if not hash then return -2 end
  return left_ms(hash) or -1
end
function commands.PEXPIRE(key, ms)
  local hash = hash_of(key)
  if not hash then return 0 end
  hash.expires = clock.now + tonumber(ms) * 1000
  set_hash(key, hash)
  return 1
end

local function run_staged(script, clock_us, argv, nkeys, ...)
  clock.now = clock_us
  local keys = {...}
  data, sets, dels = {}, {}, {}
  for i = nkeys + 1, #keys, 2 do
    data[keys[i]], keys[i], keys[i + 1] = keys[i + 1], nil, nil
  end
  -- The reply becomes the flat list: its count goes in front.
  local out = integers(script(keys, argv))
  local count = #out
  table.insert(out, 1, count)
  local at = count + 2
  local nsets = at
  out[nsets] = 0
  for key, entry in pairs(sets) do
    local value = entry[1]
    local hashed = type(value) == 'table'
    if hashed then value = encoded(value) end
    local timeout = entry[2] and math.max(1, math.ceil(entry[2] / 1000)) or nil
    out[at + 1], out[at + 2], out[at + 3], out[at + 4] = key, timeout, hashed, value
    at = at + 4
    out[nsets] = out[nsets] + 1
  end
  for key in pairs(dels) do
    at = at + 1
    out[at] = key
  end
  return unpack(out, 1, at)
end

return run_staged
