-- Apply one registration report to Redis unless a newer one is there already
-- (two reports of one trunk can race between the database and Redis): newer by
-- Kamailio's clock, or the same registration (Call-ID) at a higher CSeq. Going
-- offline leaves a marker holding the order fields for as long as a
-- registration can last, so a late, older report cannot bring the binding back.
-- KEYS: registration, trunks_online, gone_marker
-- ARGV: trunk_id, value, ttl_s, ts, call_id, cseq, marker_ttl_s
-- (value is the registration JSON, '' = offline). Returns 1 if applied.
local registration, trunks_online, gone_marker = KEYS[1], KEYS[2], KEYS[3]
local trunk_id, value, ttl_s, ts, call_id, cseq, marker_ttl_s = unpack(ARGV, 1, 7)
for _, key in ipairs({registration, gone_marker}) do
  local old = redis.call('GET', key)
  if old then
    local ok, doc = pcall(cjson.decode, old)
    if ok and type(doc) == 'table' then
      if tonumber(doc['ts'] or 0) > tonumber(ts) then return 0 end
      if doc['call_id'] == call_id and tonumber(doc['cseq'] or 0) > tonumber(cseq) then
        return 0
      end
    end
  end
end
if value == '' then
  redis.call('DEL', registration)
  redis.call('SREM', trunks_online, trunk_id)
  redis.call('SET', gone_marker, cjson.encode({ts = tonumber(ts), call_id = call_id,
    cseq = tonumber(cseq)}), 'EX', marker_ttl_s)
else
  redis.call('SET', registration, value, 'EX', ttl_s)
  redis.call('SADD', trunks_online, trunk_id)
  redis.call('DEL', gone_marker)
end
return 1
