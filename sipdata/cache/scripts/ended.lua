-- Calls whose end or failure was written to the database while Redis was away
-- (serving/callbacks.py, the direct CDR): once Redis answers again, each gives
-- its channel back and leaves its `ended` mark, as call_events.lua would have.
-- Without this the lease would hold a channel until its TTL lapsed (up to the
-- longest call, if a start report kept by Kamailio arrived afterwards).
-- KEYS: then per call: lease, ended
-- ARGV: ringing_ms, then per call: call_id
-- Returns how many leases were released.
local ringing_ms = ARGV[1]
local n = 0
for c = 0, #KEYS / 2 - 1 do
  local lease, ended = KEYS[1 + 2 * c], KEYS[2 + 2 * c]
  local call_id = ARGV[2 + c]
  redis.call('SET', ended, '1', 'PX', ringing_ms)
  local sets = redis.call('HGET', lease, 'sets')
  if sets then
    for key in string.gmatch(sets, '%S+') do redis.call('ZREM', key, call_id) end
    redis.call('DEL', lease)
    n = n + 1
  end
end
return n
