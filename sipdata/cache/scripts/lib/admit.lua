-- Admit a call unless a limit is full; the check and the admission are one
-- step. K and A are admit.lua's KEYS and ARGV (see there). A limit < 0 is none.
-- Answers ok | dup (this Call-ID holds a lease already: a retransmission or the
-- INVITE after a 407 counts once) | trunk | org | rule | rate (the full limit)
-- | restoring (Redis lost its leases and the warmer has not put the saved
-- counts back yet: every count would start at zero, keys.LEASES_KEPT) | ended
-- (the call's end was stored already: a question that arrived late takes no
-- channel, keys.ended).
local function admit(K, A)
  local lease, trunk_set, org_set, rule_set, rate_window, channel_trunks, leases_kept, ended =
    unpack(K, 1, 8)
  local call_id, now_ms, pending_ms, set_ms, trunk_max, org_max, rule_max, rule_id,
    cps_max, window_ttl_s, trunk_id, lease_doc = unpack(A, 1, 12)
  if redis.call('EXISTS', leases_kept) == 0 then return 'restoring' end
  if redis.call('EXISTS', lease) == 1 then return 'dup' end
  if redis.call('EXISTS', ended) == 1 then return 'ended' end
  local now = tonumber(now_ms)
  local sets = {{trunk_set, tonumber(trunk_max), 'trunk'}, {org_set, tonumber(org_max), 'org'}}
  if rule_id ~= '' then sets[3] = {rule_set, tonumber(rule_max), 'rule'} end
  for _, s in ipairs(sets) do
    redis.call('ZREMRANGEBYSCORE', s[1], '-inf', now)
    if s[2] >= 0 and redis.call('ZCARD', s[1]) >= s[2] then return s[3] end
  end
  local cps = tonumber(cps_max)
  if cps >= 0 and tonumber(redis.call('GET', rate_window) or '0') >= cps then return 'rate' end
  local tracked = {}
  for _, s in ipairs(sets) do
    redis.call('ZADD', s[1], now + tonumber(pending_ms), call_id)
    redis.call('PEXPIRE', s[1], set_ms)
    tracked[#tracked + 1] = s[1]
  end
  if cps >= 0 then
    redis.call('INCR', rate_window)
    redis.call('EXPIRE', rate_window, window_ttl_s)
  end
  redis.call('SADD', channel_trunks, trunk_id)
  redis.call('PEXPIRE', channel_trunks, set_ms)
  redis.call('HSET', lease, 'sets', table.concat(tracked, ' '), 'doc', lease_doc)
  redis.call('PEXPIRE', lease, pending_ms)
  return 'ok'
end
