-- Reset the lock's TTL only if it still holds our value (compare-and-extend).
-- KEYS[1]: lock key (KEYS[2], passed to every owned-lock script, is unused here);
-- ARGV[1]: our value; ARGV[2]: new TTL in ms. Returns 1 if extended, -1 if not ours.
if holds(KEYS[1], ARGV[1]) then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return -1
