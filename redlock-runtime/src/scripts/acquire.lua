-- One attempt of a waiting request on one master. (A request that does not wait, and the
-- first attempt of most requests, is a plain `SET key value NX PX ttl`.)
-- Waiters queue by ticket; a free lock goes to the head of the queue only, and a release
-- grants the lock to the head by writing its id as the value (see release.lua), so that a
-- client that just released cannot barge ahead of a head that waited `OVERTAKE_FOR`. An attempt of the grantee
-- (one that did not hear of the grant in time) claims it.
-- While foreign waiters have their window (see release.lua), our waiters do not take the
-- lock; the head of our queue polls rather than waits for an announcement, to see the window
-- used, and while a foreign holder holds the lock, as foreign holders release unannounced.
-- KEYS[1]: lock key; KEYS[2]: queue (zset waiter -> ticket); KEYS[3]: expiries (zset waiter ->
-- when its place expires, ms); KEYS[4]: foreign-waiter state (hash: missed = unused windows in
-- a row, window = end of the current window, foreign_hold = taken in the last window and not
-- ours since); KEYS[5]: the head's state (see release.lua); KEYS[6..7]: the waiting counter and the sum of our processes' counts in it
-- (see stats.lua; left out in Redis Cluster, where they lie in another slot: no foreign
-- waiters are seen there).
-- ARGV[1]: value; ARGV[2]: TTL ms; ARGV[3]: waiter id; ARGV[4]: ticket (when the wait started,
-- the same on every master); ARGV[5]: how long a place lasts without an attempt (ms);
-- ARGV[6]: how often a waiter polls while foreign waiters wait (ms).
-- Returns {1, 0, 0, 0, false, 0} when acquired, else {0, ms until the next attempt may succeed (0: when a
-- release is announced), how many releases come before our turn, 1 if we are next in line
-- else 0 (see `turns` in mutex.lua), the holder's value or false if free, 1 if the holder may
-- be foreign (it may release unannounced: the waiter watches the key, see `wake.rs`) else 0}.
local waiter = ARGV[3]
local now = now_ms()
leave_expired(KEYS[2], KEYS[3], now)
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], waiter)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), waiter)
-- Both expire with the newest place: once it expires, every place in them has expired, so a
-- lock nobody waits for any more leaves no key behind.
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local poll = tonumber(ARGV[6])

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  -- Our own value: the attempt was sent twice (its connection broke), and the first took it.
  redis.call('ZREM', KEYS[2], waiter)
  redis.call('ZREM', KEYS[3], waiter)
  return {1, 0, 0, 0, false, 0}
end
local state = redis.call('HMGET', KEYS[4], 'window', 'foreign_hold')
local window, foreign_hold = tonumber(state[1]), state[2]
if window then
  if holder then
    -- Taken in the window (by a foreign waiter, mostly): it is over; poll until released.
    redis.call('HDEL', KEYS[4], 'window')
    redis.call('HSET', KEYS[4], 'missed', 0, 'foreign_hold', 1)
    foreign_hold = true
  elseif now < window then
    -- The head polls, to see the window used (or to take the lock when it ends unused).
    local rank = redis.call('ZRANK', KEYS[2], waiter)
    local wait = window - now
    if rank == 0 then
      wait = math.min(wait, poll)
    end
    local releases, next_in_line = turns(rank, 0)
    return {0, wait, releases, next_in_line, false, 0}
  else
    -- Nobody took it: perhaps nobody polls any more.
    redis.call('HDEL', KEYS[4], 'window')
    redis.call('HINCRBY', KEYS[4], 'missed', 1)
  end
end
local ours
if holder then
  -- Granted to us by a release.
  ours = holder == waiter
else
  ours = redis.call('ZRANGE', KEYS[2], 0, 0)[1] == waiter
end
if ours then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZREM', KEYS[2], waiter)
  redis.call('ZREM', KEYS[3], waiter)
  if foreign_hold then
    redis.call('HDEL', KEYS[4], 'foreign_hold')
  end
  return {1, 0, 0, 0, false, 0}
end
-- How long until an attempt may succeed: the holder's TTL (a grant to the waiter ahead: until
-- it lapses unless extended), at most the polling interval for the head while foreign waiters
-- wait or hold.
local rank = redis.call('ZRANK', KEYS[2], waiter)
local wait, held, foreign = 0, 0, 0
if holder then
  held = 1
  wait = redis.call('PTTL', KEYS[1])
  if wait == -1 then
    wait = 2147483647 -- a key without TTL (not ours): the heartbeat retries anyway
  elseif wait < 0 then
    wait = 0
  end
  if foreign_hold or foreign_waiters(KEYS[6], KEYS[7]) > 0 then
    -- The holder may be foreign, and its release unannounced: the head polls, and those
    -- behind it wait for the head's release only.
    if rank == 0 then
      wait = math.min(wait, poll)
      foreign = 1
    else
      held = 0
    end
  end
end
if rank == 0 and holder then
  -- Offered the lock and overtaken meanwhile: the next release announces again, so that a
  -- head whose attempt the overtaker refused is not left waiting for its fallback timer.
  redis.call('HDEL', KEYS[5], 'offered')
end
local releases, next_in_line = turns(rank, held)
return {0, wait, releases, next_in_line, holder or false, foreign}
