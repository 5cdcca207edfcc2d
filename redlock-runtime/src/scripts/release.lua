-- Release the lock only if it still holds our value, and grant it to the waiters whose turn
-- it is (see `grant` in mutex.lua), so that nobody barges ahead of a waiter that waited
-- `OVERTAKE_FOR` and the grantee needs no second round trip; or, while the head of the queue has waited less than
-- `OVERTAKE_FOR` (keys.rs), leave it free and offer it to the head (announced as `-<head>`):
-- whoever asks first takes it, the releaser's next request mostly; or, when foreign waiters
-- have their turn, leave it free for a window in which our waiters do not take it.
-- Foreign waiters (the Python library's: they poll with `SET NX` and never join the queue, but
-- count themselves in the waiting counter) take turns as one more process of the queue: the
-- release that follows a round of grants to our waiters (one more than the waiters queued at
-- that release, the releaser's next request among them; doubled for each window that went
-- unused in a row, up to 64 times: a crashed foreign waiter stays counted) leaves the lock to
-- them instead. The head of our queue then polls (acquire.lua).
-- KEYS[1]: lock key; KEYS[2]: queue; KEYS[3]: expiries; KEYS[4]: foreign-waiter state (hash:
-- since = grants since the last window, missed = unused windows in a row, window = end of the
-- current window); KEYS[5]: the head's state while it may be overtaken (hash, expiring as a
-- grant does: since = when the last grant made the next waiter the head, on the releaser's
-- clock; offered = the head last offered the lock); KEYS[6..7]: the waiting counter and the
-- sum of our processes' counts in it (left out in Redis Cluster, where they lie in another
-- slot).
-- ARGV[1]: our value; ARGV[2]: the lock's release channel; ARGV[3]: how long a grant lasts
-- unless extended (ms); ARGV[4]: how long a window for foreign waiters lasts (ms); ARGV[5]:
-- how long the key is kept held instead, if not 0 (ms: what is left of a minimum hold);
-- ARGV[6]: how long the head may be overtaken (ms); ARGV[7]: the releaser's clock (ms, as the
-- waiters' tickets).
-- Returns 1 if released (or kept), 2 if released and left to foreign waiters, -1 if not ours.
if not holds(KEYS[1], ARGV[1]) then
  return -1
end
local keep = tonumber(ARGV[5]) or 0
if keep > 0 then
  redis.call('PEXPIRE', KEYS[1], keep)
  return 1
end
let_go(KEYS[1])
local granted = {}
if redis.call('EXISTS', KEYS[2]) == 1 then
  local now = now_ms()
  if foreign_waiters(KEYS[6], KEYS[7]) > 0 then
    local since = redis.call('HINCRBY', KEYS[4], 'since', 1)
    local missed = math.min(tonumber(redis.call('HGET', KEYS[4], 'missed') or '0'), 6)
    redis.call('PEXPIRE', KEYS[4], FOREIGN_STATE_TTL)
    if since > redis.call('ZCARD', KEYS[2]) * 2 ^ missed then
      redis.call('HSET', KEYS[4], 'since', 0, 'window', now + tonumber(ARGV[4]))
      redis.call('PUBLISH', ARGV[2], '')
      return 2
    end
  end
  leave_expired(KEYS[2], KEYS[3], now)
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local clock, overtake = tonumber(ARGV[7]), tonumber(ARGV[6])
  if head[1] and overtake > 0 then
    -- The head's time to be overtaken runs from when it became the head: the last grant, or
    -- its ticket if it came later (not later than now: a client clock that runs ahead
    -- shortens the head's wait, never lengthens it). Announced once per head: it attempts
    -- when that time is over, unless a release grants it the lock first (waking it at each
    -- release of a looping releaser would cost its process, and Redis, more than the barging
    -- saves).
    local state = redis.call('HMGET', KEYS[5], 'offered', 'since')
    local since = math.min(tonumber(state[2]) or 0, clock)
    local known = state[1] == head[1]
    if not known then
      since = math.max(since, math.min(tonumber(head[2]), clock))
    end
    if clock - since < overtake then
      if not known then
        redis.call('HSET', KEYS[5], 'offered', head[1], 'since', since)
        redis.call('PEXPIRE', KEYS[5], ARGV[3])
        -- A head that never takes it (killed, paused) leaves the queue as a lapsed grant
        -- would: the waiter behind it, woken by the offer, attempts when it lapses.
        redis.call('ZADD', KEYS[3], 'XX', now + tonumber(ARGV[3]), head[1])
        redis.call('PUBLISH', ARGV[2], '-' .. head[1])
      end
      return 1
    end
  end
  granted = grant(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]))
  if #granted > 0 and overtake > 0 then
    redis.call('HSET', KEYS[5], 'since', clock)
    redis.call('PEXPIRE', KEYS[5], ARGV[3])
  end
end
if #granted == 0 then
  return 1
end
-- Every waiter of ours listens: the grantees hold the lock, those behind them count the
-- release. A waiter subscribes before it joins the queue, so none can miss a grant made to it.
redis.call('PUBLISH', ARGV[2], table.concat(granted, ' '))
return 1
