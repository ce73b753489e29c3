-- Hold credit for a call of a credit-controlled org (decide/credit.py's
-- `reserve`, repeated here so that concurrent calls of one org take from one
-- balance atomically). The account hash holds `avail` (balance + credit limit,
-- micro-units, loaded from the database by credit_load.lua) and `reserved`
-- (what calls in flight hold). Each hold is a field of `held` ("amount max_s")
-- and a member of `holds` scored with when it lapses, so a call whose CDR
-- never comes gives its hold back by itself. A new hold lapses with the call's
-- lease (lapse_ms, the pending time): only the call's start report
-- (call_events.lua) keeps it for the call's length, so INVITEs that are never
-- relayed cannot tie an org's credit up.
-- KEYS: account, holds, held
-- ARGV: call_id, now_ms, rate_micro, minimum_s, increment_s, cap_s, lapse_ms
-- Returns {'ok'|'dup', max_s, hold, free} | {'funds', 0, 0, free} | {'unknown', 0, 0, 0}.
local account, holds, held = KEYS[1], KEYS[2], KEYS[3]
local call_id, now_ms = ARGV[1], tonumber(ARGV[2])
local rate_micro, minimum_s, increment_s = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cap_s, lapse_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local avail = redis.call('HGET', account, 'avail')
if not avail then return {'unknown', 0, 0, 0} end
-- holds of calls that never settled: given back
local lapsed = redis.call('ZRANGEBYSCORE', holds, '-inf', now_ms)
for _, id in ipairs(lapsed) do
  local h = redis.call('HGET', held, id)
  if h then
    redis.call('HINCRBY', account, 'reserved', -tonumber(string.match(h, '^(%d+)')))
    redis.call('HDEL', held, id)
  end
  redis.call('ZREM', holds, id)
end
local reserved = tonumber(redis.call('HGET', account, 'reserved') or '0')
local free = tonumber(avail) - reserved
local mine = redis.call('HGET', held, call_id)
if mine then
  local amount, max_s = string.match(mine, '^(%d+) (%d+)$')
  return {'dup', tonumber(max_s), tonumber(amount), free}
end
-- integer arithmetic throughout (exact below 2^53, as credit.py's)
local function idiv(a, b) return (a - a % b) / b end
local function billable(s)
  if s <= 0 then return 0 end
  return math.max(minimum_s, (idiv(s - 1, increment_s) + 1) * increment_s)
end
local function cost(s)
  local x = rate_micro * s
  return idiv(x, 60) + ((x % 60 > 0) and 1 or 0)
end
local cap = math.max(idiv(cap_s, increment_s) * increment_s, increment_s)
local max_s, hold = cap, 0
if rate_micro > 0 then
  if free < cost(billable(1)) then return {'funds', 0, 0, free} end
  local affordable = idiv(free * 60, rate_micro)
  max_s = math.max(math.min(cap, idiv(affordable, increment_s) * increment_s), increment_s)
  hold = cost(billable(max_s))
end
redis.call('HINCRBY', account, 'reserved', hold)
redis.call('HSET', held, call_id, hold .. ' ' .. max_s)
redis.call('ZADD', holds, now_ms + lapse_ms, call_id)
return {'ok', max_s, hold, free}
