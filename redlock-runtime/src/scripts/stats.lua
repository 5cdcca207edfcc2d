-- Waiting statistics, compatible with the Python library (a counter per stats name and a
-- registry of stats keys), made crash-safe: each of our waiters also holds an entry with a
-- an expiry in a live set; a waiter whose entry expired (killed) is uncounted by whoever comes next.
-- KEYS[1]: Waiting.ConfigurableLock.<stats_name>; KEYS[2]: {KEYS[1]}:live (zset waiter -> expiry ms);
-- KEYS[3]: Inserted.<KEYS[1]>; KEYS[4]: ConfigurableLockKeys (both left out in Redis Cluster,
-- where they lie in other slots and the caller registers the counter itself).
-- ARGV[1]: 'begin' | 'refresh' | 'end' | 'read'; ARGV[2]: waiter id; ARGV[3]: how long an entry lasts (ms);
-- ARGV[4]: the registry entry (JSON text of KEYS[1]).
-- Returns the counter after the operation.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if expired > 0 then
  redis.call('DECRBY', KEYS[1], expired)
end
local op = ARGV[1]
local function count_in()
  redis.call('INCRBY', KEYS[1], 1)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
end
if op == 'begin' then
  count_in()
  -- Registered once, atomically (the Python library's EXISTS-then-SET can duplicate it).
  if #KEYS == 4 and redis.call('SET', KEYS[3], '1', 'NX') then
    redis.call('RPUSH', KEYS[4], ARGV[4])
  end
elseif op == 'refresh' then
  if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
  else
    -- Presumed dead and uncounted (a long pause), but alive: count in again.
    count_in()
  end
elseif op == 'end' then
  if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
    redis.call('DECRBY', KEYS[1], 1)
  end
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
