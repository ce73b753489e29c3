-- Drop members of trunks:online whose registration key has expired; the set
-- itself has no TTL (the warmer and the registrar own it).
-- KEYS: trunks_online
-- ARGV: registration_prefix
-- Returns how many were dropped.
local trunks_online, registration_prefix = KEYS[1], ARGV[1]
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', trunks_online)) do
  if redis.call('EXISTS', registration_prefix .. id) == 0 then
    redis.call('SREM', trunks_online, id)
    removed = removed + 1
  end
end
return removed
