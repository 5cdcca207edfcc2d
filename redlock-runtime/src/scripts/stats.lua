-- Waiting statistics, compatible with the Python library (a counter per stats name and a
-- registry of stats keys), made crash-safe: each process of ours counts its waiters of a stats
-- name with one entry in a live set, which expires unless refreshed, and whose weight says how
-- many waiters it counts; an expired entry (its process killed) is uncounted by whoever comes next.
-- KEYS[1]: Waiting.ConfigurableLock.<stats_name>; KEYS[2]: {KEYS[1]}:live (zset entry -> expiry ms);
-- KEYS[3]: {KEYS[1]}:weights (hash entry -> waiters; an entry without weight counts one, as
-- earlier versions wrote them); KEYS[4]: {KEYS[1]}:ours (the sum of the weights: what the
-- counter holds beyond it is foreign waiters, see acquire.lua); KEYS[5]: Inserted.<KEYS[1]>;
-- KEYS[6]: ConfigurableLockKeys (both left out in Redis Cluster, where they lie in other
-- slots and the caller registers the counter itself).
-- ARGV[1]: 'set' | 'read'; ARGV[2]: entry id; ARGV[3]: how long an entry lasts (ms);
-- ARGV[4]: the registry entry (JSON text of KEYS[1]); ARGV[5]: how many waiters the entry counts now.
-- Returns the counter after the operation.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- The waiters an entry counts, and whether it has a weight (is in the sum of KEYS[4]).
local function weight(entry)
  local weight = redis.call('HGET', KEYS[3], entry)
  return tonumber(weight or '1'), weight ~= false
end
-- The sum of the weights, kept only while positive: no key is left behind.
local function add_to_ours(delta)
  if delta ~= 0 and redis.call('INCRBY', KEYS[4], delta) <= 0 then
    redis.call('DEL', KEYS[4])
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  local gone, gone_weighted = 0, 0
  for _, entry in ipairs(expired) do
    local waiters, weighted = weight(entry)
    gone = gone + waiters
    if weighted then
      gone_weighted = gone_weighted + waiters
    end
  end
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
  redis.call('DECRBY', KEYS[1], gone)
  add_to_ours(-gone_weighted)
end
if ARGV[1] == 'set' then
  local entry = ARGV[2]
  local waiters = tonumber(ARGV[5])
  -- An entry presumed dead (a long pause) was uncounted: it counts in again.
  local counted, weighted = 0, false
  if redis.call('ZSCORE', KEYS[2], entry) then
    counted, weighted = weight(entry)
  end
  if waiters ~= counted then
    redis.call('INCRBY', KEYS[1], waiters - counted)
  end
  add_to_ours(waiters - (weighted and counted or 0))
  if waiters > 0 then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), entry)
    redis.call('HSET', KEYS[3], entry, waiters)
    -- Registered once, atomically (the Python library's EXISTS-then-SET can duplicate it).
    if counted == 0 and #KEYS == 6 and redis.call('SET', KEYS[5], '1', 'NX') then
      redis.call('RPUSH', KEYS[6], ARGV[4])
    end
  else
    redis.call('ZREM', KEYS[2], entry)
    redis.call('HDEL', KEYS[3], entry)
  end
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
