-- Switch the serving generation, atomically with the expiry bookkeeping.
-- Bumps the epoch (keys.EPOCH), so memos and read-through answers are dropped.
-- Refuses to go backwards, so a slow warmer can never replace a newer load.
-- KEYS: current, epoch
-- ARGV: generation, grace_s, then per hash kind: kind_prefix
-- Returns 1 if switched, 0 if a newer generation serves already.
local current, epoch = KEYS[1], KEYS[2]
local generation, grace_s = ARGV[1], ARGV[2]
local cur = tonumber(redis.call('GET', current) or '0')
local new = tonumber(generation)
if new <= cur then return 0 end
for i = 3, #ARGV do
  redis.call('PERSIST', ARGV[i] .. new)
  if cur > 0 then redis.call('EXPIRE', ARGV[i] .. cur, grace_s) end
end
redis.call('SET', current, new)
redis.call('INCR', epoch)
return 1
