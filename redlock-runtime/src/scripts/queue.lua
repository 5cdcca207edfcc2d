-- Shared by the scripts that read a lock's queue of waiters (prepended to them when loaded).

-- How long the state of a lock's foreign waiters outlives its last use (ms).
local FOREIGN_STATE_TTL = 60000

-- The server's clock in ms: expiries are compared on one clock, whatever the clients' clocks.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Waiters whose place expired (killed, cancelled without cleanup) leave the queue.
local function leave_expired(queue, expiries, now)
  local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now)
  if #expired > 0 then
    redis.call('ZREM', queue, unpack(expired))
    redis.call('ZREMRANGEBYSCORE', expiries, '-inf', now)
  end
end


-- Reserves the lock for the waiter `head` for `ms`, and cuts its place short to the same: a
-- head that does not claim the lock in time (killed, paused, cancelled without cleanup) drops
-- out of the queue with its reservation, and the next waiter's attempt takes the lock. A head
-- that was only slow attempts again with its ticket and is back at the front of the queue.
local function reserve_for(lock, expiries, head, ms, now)
  redis.call('SET', lock, 'reserved:' .. head, 'PX', ms)
  local expiry = tonumber(redis.call('ZSCORE', expiries, head))
  if expiry and expiry > now + ms then
    redis.call('ZADD', expiries, now + ms, head)
  end
end
