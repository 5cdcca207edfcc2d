-- The lock kind: the mutex, one holder at a time. These functions are all that the scripts
-- know of a kind: what holding means, what a release lets go of, whom a release grants the
-- lock to, and how many releases a refused waiter must see before its turn. The queue of
-- waiters, the waits and the wake-ups are the same for any kind (README "How it works",
-- "Lock kinds"). Prepended after queue.lua, whose helpers `grant` uses.

-- Whether `value` holds the lock on this master: the key is its value.
local function holds(lock, value)
  return redis.call('GET', lock) == value
end

-- Our hold ends (we held it: see `holds`).
local function let_go(lock)
  redis.call('DEL', lock)
end

-- Grants the free lock to the waiters whose turn it is (the first waiter of the queue, if any;
-- the caller has let the expired ones leave with `leave_expired`): writes its id as the lock's
-- value for `ms`, takes it out of the queue, and returns the ids granted to (announced in one
-- message, space-separated). The
-- grantee holds the lock as soon as it hears of the grant (see `wait/schedule.rs`), and
-- extends it at once; a grantee that never does (killed, paused) holds it only `ms`. A
-- waiter that was only slow attempts again with its ticket and is back at the front.
local function grant(lock, queue, expiries, ms)
  local head = redis.call('ZPOPMIN', queue)[1]
  if not head then
    return {}
  end
  redis.call('SET', lock, head, 'PX', ms)
  redis.call('ZREM', expiries, head)
  return {head}
end

-- A refused waiter's turn, from its `rank` in the queue and whether a holder must release
-- first (`held`): how many releases come before it, and whether it is next in line (the next
-- grant goes to the waiter just ahead of it, and is its own if that one lets it lapse: 1,
-- else 0).
local function turns(rank, held)
  return rank + held, rank == 1 and 1 or 0
end
