-- Write many fields of one generation hash from one argument, and keep it expiring.
-- A full load writes a million fields: as HSET arguments each is packed by the
-- client in Python (a third of a load's CPU); as one JSON array per call the
-- client packs one string and Redis decodes it in C. Batches stay small
-- (cache.client.PACKED_BATCH) so no decision waits long behind one call.
-- KEYS: hash
-- ARGV: fields, ttl_s
-- fields is a JSON array [field, value, field, value, ...] of strings.
-- Returns the number of fields written.
local hash = KEYS[1]
local fields, ttl_s = cjson.decode(ARGV[1]), ARGV[2]
local n = #fields
local step = 1000  -- stays well inside Lua's unpack() limit
for i = 1, n, step do
  redis.call('HSET', hash, unpack(fields, i, math.min(i + step - 1, n)))
end
redis.call('EXPIRE', hash, ttl_s)
return n / 2
