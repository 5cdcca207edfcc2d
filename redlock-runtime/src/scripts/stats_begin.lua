-- A wait starts: count the waiter and register the stats key once, atomically (the Python
-- library checks EXISTS then SETs, which lets concurrent first waiters push duplicates).
-- KEYS[1]: Waiting.ConfigurableLock.<stats_name>; KEYS[2]: Inserted.Waiting.ConfigurableLock.<stats_name>;
-- KEYS[3]: ConfigurableLockKeys; ARGV[1]: the registry entry (JSON text of KEYS[1]).
redis.call('INCRBY', KEYS[1], 1)
if redis.call('SET', KEYS[2], '1', 'NX') then
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
return 1
