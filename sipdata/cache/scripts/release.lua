-- Give back a lease taken by decide.lua for a call that did not route after
-- all (the calls-per-second window keeps its count: that limit counts attempts).
-- KEYS: lease
-- ARGV: call_id
local lease, call_id = KEYS[1], ARGV[1]
local sets = redis.call('HGET', lease, 'sets')
if sets then
  for key in string.gmatch(sets, '%S+') do redis.call('ZREM', key, call_id) end
  redis.call('DEL', lease)
end
return 1
