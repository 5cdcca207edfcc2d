-- A waiter leaves the queue: it holds the lock, or gives up (deadline, cancellation, its process
-- ending) and leaves at once instead of holding its place until it expires. One that gives up
-- passes on a grant made to it that it has not heard of, or the free lock offered to it, so
-- that nobody waits for that grant to lapse.
-- KEYS[1]: lock key; KEYS[2]: queue; KEYS[3]: expiries; KEYS[4]: the head's state (see
-- release.lua).
-- ARGV[1]: waiter id; ARGV[2]: the lock's release channel; ARGV[3]: how long a grant lasts (ms);
-- ARGV[4]: '1' if the waiter holds the lock by grants (it keeps a grant made to it here).
-- The free lock goes to the next waiter.
local function hand_on()
  leave_expired(KEYS[2], KEYS[3], now_ms())
  local granted = grant(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[3]))
  if #granted > 0 then
    redis.call('PUBLISH', ARGV[2], table.concat(granted, ' '))
  end
end

redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[4], 'offered') == ARGV[1] and redis.call('EXISTS', KEYS[1]) == 0 then
  -- Offered the free lock (see release.lua), and gone.
  redis.call('HDEL', KEYS[4], 'offered')
  hand_on()
elseif ARGV[4] ~= '1' and holds(KEYS[1], ARGV[1]) then
  let_go(KEYS[1])
  hand_on()
end
return 1
