-- luathrottle embedded: prelude
-- version: 5
--
-- What every in-process keyspace shares: Redis's redis.call and redis.pcall
-- dispatch, TIME, the SET ... PX ms option and a reply's integers. Not an
-- algorithm: it never goes to a Redis server.
--
-- Chunk arguments:
--   ...             the backend's name, as error messages show it
--
-- Returns, for the keyspace chunk run after it:
--   commands        a table to fill with GET, SET, DEL...; TIME is there
--   clock           a table; set clock.now in microseconds before a call
--   px_ms           px_ms(option, ttl): a SET's PX option, in milliseconds
--   integers        integers(reply): a script's reply, each number made an
--                   integer as Redis makes it; raises on any other value
-- and, for Python:
--   compile         compile(source, name): a script as a function of
--                   (KEYS, ARGV), as Redis runs it; raises on a syntax error

local BACKEND = ...
local clock = {now = 0}
local commands = {}

function commands.TIME()
  local seconds = math.floor(clock.now / 1000000)
  return {tostring(seconds), tostring(clock.now - seconds * 1000000)}
end

-- Scripts call redis.call as on a Redis server, so the name must be global.
redis = {}
function redis.call(name, ...)
  -- Scripts name commands in capitals; only others pay for upper().
  local command = commands[name] or commands[string.upper(name)]
  if command == nil then
    error('ERR unknown command ' .. tostring(name) .. ' in the ' .. BACKEND ..
      ' backend')
  end
  return command(...)
end
-- As on Redis, an error comes back as a table whose err field holds it.
function redis.pcall(name, ...)
  local ok, reply = pcall(redis.call, name, ...)
  if ok then return reply end
  return {err = reply}
end

local function px_ms(option, ttl)
  if (option ~= 'PX' and string.upper(option) ~= 'PX') or tonumber(ttl) == nil then
    error('ERR ' .. BACKEND .. ' backend supports only SET key value [PX ms]')
  end
  return tonumber(ttl)
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

-- A script becomes the body of a function of KEYS and ARGV, as in the
-- function library Redis runs, so a script sees no other script's; the
-- function starts on the script's first line, so errors name the lines of
-- its file. A function with named parameters, unlike a chunk's varargs, can
-- start a LuaJIT trace where it is entered.
local function compile(source, name)
  local chunk, problem = loadstring(
    'return function(KEYS, ARGV) ' .. source .. '\nend', '=' .. name)
  if chunk == nil then
    error(problem, 0)
  end
  return chunk()
end

return commands, clock, px_ms, integers, compile
