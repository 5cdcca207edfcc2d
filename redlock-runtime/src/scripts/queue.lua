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
