-- One attempt of a waiting request on one master. (A request that does not wait, and the
-- first attempt of every request, is a plain `SET key value NX PX ttl`.)
-- Waiters queue by ticket; a free lock goes to the head of the queue only, and a release
-- hands the key over to the head as `reserved:<waiter>` (see release.lua), so that a client
-- that just released cannot barge ahead of those waiting.
-- KEYS[1]: lock key; KEYS[2]: queue (zset waiter -> ticket); KEYS[3]: expiries (zset waiter -> when its place expires, ms)
-- ARGV[1]: value; ARGV[2]: TTL ms; ARGV[3]: waiter id; ARGV[4]: ticket (when the wait started,
-- the same on every master); ARGV[5]: how long a place lasts without an attempt (ms).
-- Returns {1, 0, 0} when acquired, else {0, remaining TTL ms of the holder (0 if free or
-- reserved for another waiter), rank in the queue}.
local waiter = ARGV[3]
local now = now_ms()
leave_expired(KEYS[2], KEYS[3], now)
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], waiter)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), waiter)
-- Both expire with the newest place: once it expires, every place in them has expired, so a
-- lock nobody waits for any more leaves no key behind.
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, 9) == 'reserved:'
    and not redis.call('ZSCORE', KEYS[2], string.sub(holder, 10)) then
  -- Reserved for a waiter that has left the queue (gave up, or its place expired): void.
  redis.call('DEL', KEYS[1])
  holder = false
end
local ours
if holder then
  ours = holder == 'reserved:' .. waiter
else
  ours = redis.call('ZRANGE', KEYS[2], 0, 0)[1] == waiter
end
if ours then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZREM', KEYS[2], waiter)
  redis.call('ZREM', KEYS[3], waiter)
  return {1, 0, 0}
end
-- A reservation for another waiter counts as free: it is taken over without a release.
local pttl = 0
if holder and string.sub(holder, 1, 9) ~= 'reserved:' then
  pttl = redis.call('PTTL', KEYS[1])
  if pttl == -1 then
    pttl = 2147483647 -- a key without TTL (not ours): the heartbeat retries anyway
  elseif pttl < 0 then
    pttl = 0
  end
end
return {0, pttl, redis.call('ZRANK', KEYS[2], waiter)}
