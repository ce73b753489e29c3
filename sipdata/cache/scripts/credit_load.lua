-- An org's available credit from the database (balance + credit limit, in
-- micro-units). The loader read the account's `settles` count before it read
-- the database; the value is written only if no settlement came between
-- (credit_settle.lua counts them), since the row it read may then lack a cost
-- the settlement already took here. Otherwise the next round loads it.
-- KEYS: account
-- ARGV: avail_micro, settles
-- Returns 1 when loaded, 0 when a settlement came between.
local account = KEYS[1]
local avail_micro, settles = ARGV[1], ARGV[2]
if (redis.call('HGET', account, 'settles') or '0') ~= settles then return 0 end
redis.call('HSET', account, 'avail', avail_micro)
return 1
