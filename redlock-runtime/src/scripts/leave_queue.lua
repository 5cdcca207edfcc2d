-- A waiter gives up (deadline, cancellation, its process ending): it leaves the queue at once
-- instead of holding its place until it expires, and passes on a reservation that a
-- release made for it, so that nobody waits for that reservation to expire.
-- KEYS[1]: lock key; KEYS[2]: queue; KEYS[3]: expiries.
-- ARGV[1]: waiter id; ARGV[2]: the lock's release channel; ARGV[3]: how long a reservation lasts (ms).
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == 'reserved:' .. ARGV[1] then
  local now = now_ms()
  leave_expired(KEYS[2], KEYS[3], now)
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then
    reserve_for(KEYS[1], KEYS[3], head, tonumber(ARGV[3]), now)
    redis.call('PUBLISH', ARGV[2], '')
  else
    redis.call('DEL', KEYS[1])
  end
end
return 1
