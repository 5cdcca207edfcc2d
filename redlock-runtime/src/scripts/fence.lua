-- Fencing tokens, taken only while the lock is ours.
-- KEYS[1]: lock key; KEYS[2]: {KEYS[1]}:fence (a counter that never expires).
-- ARGV[1]: our value; ARGV[2]: 'next' (increment and return) or 'raise' (make the counter at
-- least ARGV[3], so that any later quorum sees it).
-- Returns the counter, or -1 if the lock is not ours on this master.
if not holds(KEYS[1], ARGV[1]) then
  return -1
end
if ARGV[2] == 'next' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    -- A missing counter (a new lock, or a master that restarted empty) starts from this
    -- master's clock in microseconds: above every token taken before, each of which was at
    -- most its own taking time in microseconds (tokens start there and grow by one per
    -- round trip), as long as the masters' clocks agree within the restart grace.
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
  end
  return redis.call('INCR', KEYS[2])
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = tonumber(ARGV[3])
if counter < token then
  redis.call('SET', KEYS[2], ARGV[3])
  counter = token
end
return counter
