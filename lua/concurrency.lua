-- luathrottle script: concurrency
-- version: 1
-- state: 1
--
-- ConcurrencyLimiter: at most max_in_flight leases of one identity are held
-- at once. A lease is a random id, chosen by the client, that expires unless
-- renewed, so a holder that crashes frees its slot when its lease runs out.
-- Every call first drops the leases that have expired.
--
-- KEYS[1]          the identity's lease set: a sorted set of lease ids, each
--                  scored by its expiry in microseconds since 1970
-- ARGV[1]          "acquire" takes a lease, "release" gives it back,
--                  "renew" extends it to now plus the lease length
-- ARGV[2]          the lease id
-- ARGV[3]          now in microseconds, or "" to use the server's TIME.
--                  Limiters send "": a lease expires on the store's clock,
--                  the one clock that every client of a lease set shares.
--                  Tests give a time to move a real server's clock.
-- ARGV[4]          max_in_flight
-- ARGV[5]          the lease length, in microseconds
--
-- Scores are integers below 2^53, exact as Redis's doubles. The key expires
-- with its latest lease, and vanishes with its last one.
--
-- A state the script cannot read as its own was written by someone else:
-- a key of another type, or members that expire later than a lease taken
-- now could (beyond SKEW_US). They are dropped, and the reply counts them.
--
-- Reply: four integers:
--   status          1 done: acquired, released or renewed; 0 not done:
--                   the set is full (acquire), or the lease expired or was
--                   released already (release, renew)
--   in_flight       leases held after this call
--   retry_after_us  acquire denied: time until the oldest lease expires;
--                   otherwise 0
--   foreign         how many foreign members (or keys) were dropped

-- A lease may expire this much later than one taken now before it counts
-- as foreign: a margin for a store whose clock stepped back, by up to five
-- minutes (a failover to a replica whose clock is behind, say).
local SKEW_US = 300000000

local key, mode, id = KEYS[1], ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
if not now then
  local time = redis.call('TIME')
  now = time[1] * 1000000 + time[2]
end
local max_in_flight = ARGV[4] + 0
local lease = ARGV[5] + 0

local kind = redis.call('TYPE', key)['ok']
local other_type = 0
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', key)
  other_type = 1
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
local foreign = other_type + redis.call('ZREMRANGEBYSCORE', key,
  '(' .. string.format('%d', now + lease + SKEW_US), '+inf')

local status, retry_after = 0, 0
local in_flight = redis.call('ZCARD', key)
if mode == 'acquire' then
  if in_flight < max_in_flight then
    redis.call('ZADD', key, string.format('%d', now + lease), id)
    status, in_flight = 1, in_flight + 1
  else
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    retry_after = oldest[2] - now
  end
elseif mode == 'renew' then
  if redis.call('ZSCORE', key, id) then
    redis.call('ZADD', key, string.format('%d', now + lease), id)
    status = 1
  end
else
  status = redis.call('ZREM', key, id)
  in_flight = in_flight - status
end

if in_flight > 0 then
  local latest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, math.ceil((latest[2] - now) / 1000))
end
return {status, in_flight, retry_after, foreign}
