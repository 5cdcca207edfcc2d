-- A waiter gives up (deadline, cancellation): it leaves the queue at once instead of holding
-- its place until its lease runs out.
-- KEYS[1]: queue; KEYS[2]: leases; ARGV[1]: waiter id.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
