-- Call reports in one step (Kamailio sends them in batches; a single report is
-- a batch of one). Each moves its call's lease on and joins the stream:
-- acknowledged = in the stream = lease updated. start extends the lease to the
-- ringing time, answer to the longest call; neither ever shortens it (GT), so a
-- late start after an answer changes nothing. end and fail release it. No lease
-- (unknown call, lapsed lease, repeated end) = no change. end and fail also
-- leave the call's `ended` mark (keys.ended), so a question about it that
-- arrives later takes no channel. The lease doc travels with the report for
-- rating. A start or answer also keeps the call's credit hold, if its org has
-- one (credit.lua gives a hold only until the call's lease would lapse, so an
-- INVITE that is never relayed, a wrong digest password say, holds nothing for
-- long): `holds` is the org's (keys.credit_holds), and XX leaves other orgs'
-- keys alone.
-- KEYS: stream, then per report: lease, ended, holds
-- ARGV: now_ms, ringing_ms, longest_ms, set_ms, hold_ms, then per report: call_id, event, report
-- Returns the stream entry ids, in order.
local stream = KEYS[1]
local now_ms, ringing_ms, longest_ms, set_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local hold_ms = ARGV[5]
local ids = {}
for r = 0, (#KEYS - 1) / 3 - 1 do
  local lease, ended, holds = KEYS[2 + 3 * r], KEYS[3 + 3 * r], KEYS[4 + 3 * r]
  local a = 5 + r * 3
  local call_id, event, report = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if event == 'start' or event == 'answer' then
    redis.call('ZADD', holds, 'XX', 'GT', tonumber(now_ms) + tonumber(hold_ms), call_id)
  end
  if event == 'end' or event == 'fail' then
    redis.call('SET', ended, '1', 'PX', ringing_ms)
  end
  local sets = redis.call('HGET', lease, 'sets')
  local doc = ''
  if sets then
    doc = redis.call('HGET', lease, 'doc') or ''
    if event == 'end' or event == 'fail' then
      for key in string.gmatch(sets, '%S+') do redis.call('ZREM', key, call_id) end
      redis.call('DEL', lease)
    else
      local ttl = tonumber(ringing_ms)
      if event == 'answer' then ttl = tonumber(longest_ms) end
      local expiry = tonumber(now_ms) + ttl
      for key in string.gmatch(sets, '%S+') do
        redis.call('ZADD', key, 'GT', expiry, call_id)
        redis.call('PEXPIRE', key, set_ms)
      end
      redis.call('PEXPIRE', lease, ttl, 'GT')
    end
  end
  ids[#ids + 1] = redis.call('XADD', stream, '*', 'event', report, 'lease', doc)
end
return ids
