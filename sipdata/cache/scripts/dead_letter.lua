-- Move a stream entry to the dead letters, in one step with its
-- acknowledgement, unless the same report (its identity) is a dead letter
-- already: a report sent twice is one dead letter, as it would be one CDR.
-- KEYS: stream, dead, dead_index
-- ARGV: group, entry_id, identity, then per field: name, value
-- Returns 1 if a dead letter was added.
local stream, dead, dead_index = KEYS[1], KEYS[2], KEYS[3]
local group, entry_id, identity = ARGV[1], ARGV[2], ARGV[3]
local added = 0
if redis.call('HEXISTS', dead_index, identity) == 0 then
  local fields = {}
  for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
  local id = redis.call('XADD', dead, '*', 'key', identity, unpack(fields))
  redis.call('HSET', dead_index, identity, id)
  added = 1
end
redis.call('XACK', stream, group, entry_id)
redis.call('XDEL', stream, entry_id)
return added
