-- Release the lock only if it still holds our value, hand it over to the first waiter of the
-- queue (if any) as `reserved:<waiter>` for a moment, and wake the waiters (if any).
-- KEYS[1]: lock key; KEYS[2]: fence counter (unused here); KEYS[3]: queue; KEYS[4]: leases.
-- ARGV[1]: our value; ARGV[2]: the lock's release channel; ARGV[3]: how long a reservation lasts (ms).
-- Returns 1 if released, -1 if not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local head = nil
local queued = redis.call('EXISTS', KEYS[3]) == 1
if queued then
  leave_expired(KEYS[3], KEYS[4], now_ms())
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
if head then
  redis.call('SET', KEYS[1], 'reserved:' .. head, 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
-- Only queued waiters listen. A waiter subscribes before it joins the queue, so a release
-- that finds no queue either precedes its queued attempt (which then finds the lock free) or
-- has nobody to wake.
if queued then
  redis.call('PUBLISH', ARGV[2], '')
end
return 1
