-- Channel counts after Redis lost its data. Without the marker (this Redis has
-- not kept its leases: restarted empty), the counts the write-back last saved
-- in the database come back as placeholder leases, so the calls still up at the
-- edge count against their trunk's and org's limits instead of starting at
-- zero. They lapse one by one over window_ms (their end reports name Call-IDs
-- Redis no longer knows). With the marker (a failover to a replica, a restart
-- from disk, an ordinary reload) nothing changes. Sets the marker either way.
-- KEYS: marker, channel_trunks
-- ARGV: now_ms, window_ms, set_ms, trunk_set_prefix, org_set_prefix, then per trunk: trunk_id, org_id, channels
-- Returns how many placeholder leases it added (0 with the marker present).
local marker, channel_trunks = KEYS[1], KEYS[2]
local now_ms, window_ms, set_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local trunk_set_prefix, org_set_prefix = ARGV[4], ARGV[5]
if redis.call('SET', marker, now_ms, 'NX') == false then
  return 0
end
local added = 0
for i = 6, #ARGV, 3 do
  local trunk_id, org_id, channels = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local trunk_set, org_set = trunk_set_prefix .. trunk_id, org_set_prefix .. org_id
  for n = 1, channels do
    local member = 'restored:' .. trunk_id .. ':' .. n
    local lapses = now_ms + math.floor(window_ms * n / channels)
    redis.call('ZADD', trunk_set, lapses, member)
    redis.call('ZADD', org_set, lapses, member)
    added = added + 1
  end
  if channels > 0 then
    redis.call('PEXPIRE', trunk_set, set_ms)
    redis.call('PEXPIRE', org_set, set_ms)
    redis.call('SADD', channel_trunks, trunk_id)
  end
end
return added
