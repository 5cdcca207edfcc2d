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


-- Grants the lock to the first waiter of the queue that has not expired, if any: writes the
-- waiter's id as the lock's value for `ms`, takes it out of the queue, and returns its id. The
-- grantee holds the lock as soon as it hears of the grant (see `wait/schedule.rs`), and extends it at
-- once; a grantee that never does (killed, paused) holds it only `ms`. A waiter that was only
-- slow attempts again with its ticket and is back at the front of the queue.
local function grant_first(lock, queue, expiries, ms, now)
  leave_expired(queue, expiries, now)
  local head = redis.call('ZPOPMIN', queue)[1]
  if head then
    redis.call('SET', lock, head, 'PX', ms)
    redis.call('ZREM', expiries, head)
  end
  return head
end

-- How many waiters of a stats counter are not ours (see stats.lua): `counter` and `ours`
-- are nil in Redis Cluster, where the counter lies in another slot.
local function foreign_waiters(counter, ours)
  if not ours then
    return 0
  end
  local counts = redis.call('MGET', counter, ours)
  -- A counter that someone broke (not a number) counts no one: it must not fail the lock.
  return (tonumber(counts[1]) or 0) - (tonumber(counts[2]) or 0)
end
