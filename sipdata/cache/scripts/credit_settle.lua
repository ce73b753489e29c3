-- Settle calls whose CDR the database now holds: each gives back its hold and
-- takes its cost from `avail`, once (only while the hold is there: a second
-- settlement of the same call finds none and changes nothing), and counts the
-- settlement (`settles`, see credit_load.lua). The database's balance already
-- holds the cost; the next load brings it, this takes it meanwhile.
-- KEYS: account, holds, held
-- ARGV: then per call: call_id, cost_micro
-- Returns how many calls were settled.
local account, holds, held = KEYS[1], KEYS[2], KEYS[3]
local n = 0
for a = 1, #ARGV, 2 do
  local call_id, cost = ARGV[a], tonumber(ARGV[a + 1])
  local h = redis.call('HGET', held, call_id)
  if h then
    redis.call('HINCRBY', account, 'reserved', -tonumber(string.match(h, '^(%d+)')))
    redis.call('HDEL', held, call_id)
    redis.call('ZREM', holds, call_id)
    if redis.call('HEXISTS', account, 'avail') == 1 then
      redis.call('HINCRBY', account, 'avail', -cost)
    end
    redis.call('HINCRBY', account, 'settles', 1)
    n = n + 1
  end
end
return n
