-- The undo of a failed attempt: deletes the lock only if it still holds our value, and grants
-- it to nobody. A release's grant here would be a grant on this master alone, leaving its
-- grantee partly granted (it waits `GRANT / 5` for grants that never come) and refusing the
-- next waiter's quorum; the lock stays free, and the holder that won the round announces its
-- release everywhere. When nobody won it (a split vote), the undo offers the lock to the head
-- of the queue (`-<head>`, see release.lua), which then attempts instead of waiting for a
-- release that no holder will announce.
-- KEYS[1]: lock key; KEYS[2]: queue; KEYS[3]: expiries.
-- ARGV[1]: our value; ARGV[2]: the lock's release channel; ARGV[3]: 1 to offer, else 0.
-- Returns 1 if undone, -1 if not ours.
if not holds(KEYS[1], ARGV[1]) then
  return -1
end
let_go(KEYS[1])
if ARGV[3] == '1' then
  leave_expired(KEYS[2], KEYS[3], now_ms())
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head then
    redis.call('PUBLISH', ARGV[2], '-' .. head)
  end
end
return 1
