-- Release the lock only if it still holds our value, and wake the waiters (if any). The lock
-- goes to the first waiter of the queue (if any) as `reserved:<waiter>` for a moment, so that
-- nobody barges ahead of those waiting; or, when foreign waiters have their turn (see
-- acquire.lua), it is left free for a window in which our waiters do not take it.
-- KEYS[1]: lock key; KEYS[2]: fence counter (unused here); KEYS[3]: queue; KEYS[4]: leases;
-- KEYS[5]: foreign-waiter state (hash: window = end of the current window, ms).
-- ARGV[1]: our value; ARGV[2]: the lock's release channel; ARGV[3]: how long a reservation
-- lasts (ms); ARGV[4]: '1' to leave the lock to foreign waiters; ARGV[5]: their window (ms).
-- Returns 1 if released, 2 if released and left to foreign waiters, -1 if not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local queued = redis.call('EXISTS', KEYS[3]) == 1
local head = nil
local released = 1
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[5], 'window', now_ms() + tonumber(ARGV[5]))
  redis.call('PEXPIRE', KEYS[5], FOREIGN_STATE_TTL)
  released = 2
elseif queued then
  local now = now_ms()
  leave_expired(KEYS[3], KEYS[4], now)
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head then
    reserve_for(KEYS[1], KEYS[4], head, tonumber(ARGV[3]), now)
  end
end
if not head then
  redis.call('DEL', KEYS[1])
end
-- Only queued waiters listen. A waiter subscribes before it joins the queue, so a release
-- that finds no queue either precedes its queued attempt (which then finds the lock free) or
-- has nobody to wake.
if queued then
  redis.call('PUBLISH', ARGV[2], '')
end
return released
