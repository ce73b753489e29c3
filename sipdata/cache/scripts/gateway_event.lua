-- Gateway breakers stepped by a batch of events (decide/breaker.py is the
-- definition; tests/unit/test_breaker.py holds this script to it). One hash,
-- field = gateway ("host:port"), value = "state failures opened_ms"; a closed
-- gateway with no failures has no field, so the hash every decision reads
-- (decide.lua) holds only the gateways worth knowing about. One script, so two
-- nodes stepping one gateway at once cannot lose an event.
-- KEYS: breakers
-- ARGV: now_ms, fail_threshold, open_ms, then per event: gateway, event
-- Returns per event the state after it (closed, open or half_open).
local breakers = KEYS[1]
local now_ms, fail_threshold, open_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for e = 4, #ARGV, 2 do
  local gateway, event = ARGV[e], ARGV[e + 1]
  local state, failures, opened = 'closed', 0, 0
  local stored = redis.call('HGET', breakers, gateway)
  if stored then
    local s, f, o = string.match(stored, '^(%S+) (%d+) (%d+)$')
    if s == 'closed' or s == 'open' or s == 'half_open' then
      state, failures, opened = s, tonumber(f), tonumber(o)
    end
  end
  local effective = state
  if state == 'open' and now_ms >= opened + open_ms then effective = 'half_open' end
  if event == 'probe_down' then
    state, failures, opened = 'open', 0, now_ms
  elseif event == 'probe_up' then
    if effective == 'open' then state, failures = 'half_open', 0 end
  elseif event == 'ok' then
    state, failures, opened = 'closed', 0, 0
  elseif event == 'fail' then
    if effective == 'half_open' then
      state, failures, opened = 'open', 0, now_ms
    elseif effective == 'closed' then
      failures = failures + 1
      if failures >= fail_threshold then state, failures, opened = 'open', 0, now_ms end
    end
  end
  if state == 'closed' and failures == 0 then
    redis.call('HDEL', breakers, gateway)
  else
    redis.call('HSET', breakers, gateway, state .. ' ' .. failures .. ' ' .. opened)
  end
  if state == 'open' and now_ms >= opened + open_ms then state = 'half_open' end
  out[#out + 1] = state
end
return out
