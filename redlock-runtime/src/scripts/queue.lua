-- Shared by the scripts that read a lock's queue of waiters (prepended to them when loaded).

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

