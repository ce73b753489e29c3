-- Live channel counts per trunk, lapsed leases dropped first; a trunk with none
-- left leaves the set. Without the leases-kept marker (Redis lost its data and
-- the warmer has not restored the counts yet) there is nothing to count: false.
-- KEYS: channel_trunks, marker
-- ARGV: now_ms, trunk_set_prefix
-- Returns {trunk id, count, ...}, or false.
local channel_trunks, marker = KEYS[1], KEYS[2]
local now_ms, trunk_set_prefix = ARGV[1], ARGV[2]
if redis.call('EXISTS', marker) == 0 then
  return false
end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', channel_trunks)) do
  local key = trunk_set_prefix .. id
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  local n = redis.call('ZCARD', key)
  if n == 0 then redis.call('SREM', channel_trunks, id) end
  out[#out + 1] = id
  out[#out + 1] = n
end
return out
