-- Live channel counts per trunk, lapsed leases dropped first; a trunk with none
-- left leaves the set.
-- KEYS: channel_trunks
-- ARGV: now_ms, trunk_set_prefix
-- Returns {trunk id, count, ...}.
local channel_trunks = KEYS[1]
local now_ms, trunk_set_prefix = ARGV[1], ARGV[2]
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
