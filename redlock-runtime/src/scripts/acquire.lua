-- One acquisition attempt on one master: `SET key value NX PX ttl`, in the order of the
-- waiters' queue, so that a client that just released cannot barge ahead of those waiting.
-- KEYS[1]: lock key; KEYS[2]: queue (zset waiter -> ticket); KEYS[3]: leases (zset waiter -> expiry ms)
-- ARGV[1]: value; ARGV[2]: TTL ms; ARGV[3]: waiter id ('' for a caller that does not wait);
-- ARGV[4]: ticket (when the wait started, the same on every master); ARGV[5]: waiter lease ms.
-- Returns {1, 0, 0} when acquired, else {0, remaining TTL ms of the holder (0 if free), rank in the queue}.
local waiter = ARGV[3]
-- The uncontended path: no queue, not waiting: exactly `SET NX PX`.
if waiter == '' and redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {1, 0, 0}
  end
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl == -2 then
    pttl = 1 -- expired just now: try again at once
  elseif pttl == -1 then
    pttl = 2147483647 -- a key without TTL (not ours): the heartbeat retries anyway
  end
  return {0, pttl, 0}
end
local now
local function clock()
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  return now
end
local queued = redis.call('EXISTS', KEYS[2]) == 1
if queued then
  -- Waiters whose lease ran out (killed, cancelled without cleanup) leave the queue.
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', clock())
  if #expired > 0 then
    redis.call('ZREM', KEYS[2], unpack(expired))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', clock())
  end
end
if waiter ~= '' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], waiter)
  redis.call('ZADD', KEYS[3], clock() + tonumber(ARGV[5]), waiter)
  queued = true
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then
  local head = queued and redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head or head == waiter then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    if waiter ~= '' then
      redis.call('ZREM', KEYS[2], waiter)
      redis.call('ZREM', KEYS[3], waiter)
    end
    return {1, 0, 0}
  end
  pttl = 0
elseif pttl == -1 then
  -- A key without TTL (not ours): report a long wait; the heartbeat retries anyway.
  pttl = 2147483647
end
local rank = 0
if waiter ~= '' then
  rank = redis.call('ZRANK', KEYS[2], waiter)
end
return {0, pttl, rank}
