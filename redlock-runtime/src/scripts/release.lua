-- Delete the lock only if it still holds our value (compare-and-delete), and wake the waiters.
-- KEYS[1]: lock key (KEYS[2], the fence counter, is passed to every owned-lock script and unused
-- here); ARGV[1]: our value; ARGV[2]: the lock's release channel.
-- Returns 1 if deleted, -1 if not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return -1
