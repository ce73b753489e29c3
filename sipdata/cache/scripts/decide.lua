-- The decision's one round trip once the caller and its rules are known
-- (serving/decision.py): the generation check, the longest stored LCR entry of
-- each number asked for, the DID and (for calls from carriers) its
-- read-through entry, the registrations of the trunks the call may go to (the
-- DID's own trunk, found here, and the rule targets), and the admission
-- (lib/admit.lua) the call will need if it routes. Admitting before the route
-- is known saves the round trip; a call that then does not route gives its
-- lease back (release.lua). A generation that is no longer current answers
-- {current} alone and admits nothing.
-- The gateway breakers that are not plainly closed come back too (a small hash:
-- every node leaves a gateway judged down out of its next decision), and, for an
-- org that routes by quality, the carriers' quality summaries.
-- KEYS: current, lcr_hash, did_hash, did_readthrough, lease, trunk_set, org_set, rule_set, rate_window, channel_trunks, leases_kept, ended, breakers, quality
-- ARGV: params
-- params is one JSON object (one argument costs the client a fraction of
-- packing thirty): gen (text), number, did_rt (read the DID's read-through
-- key), numbers (to probe), registrations (trunk ids), registration_prefix,
-- admit (admit.lua's ARGV as an array; absent = do not admit), quality (read the
-- carriers' summaries).
-- Returns {current, {prefix, entry per number (false, false: none)}, did,
-- did read-through, {trunk id, registration ('' = none), ...}, admission,
-- breakers (HGETALL), quality summaries (HGETALL or {})}.
--! include lib/admit.lua
--! include lib/registrations.lua
local current, lcr_hash, did_hash, did_readthrough = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local params = cjson.decode(ARGV[1])
local cur = redis.call('GET', current)
if cur ~= params.gen then return {cur or false} end
local lcr = {}
for _, number in ipairs(params.numbers) do
  local probes = {}
  for len = #number, 1, -1 do probes[#probes + 1] = string.sub(number, 1, len) end
  local found = redis.call('HMGET', lcr_hash, unpack(probes))
  local prefix, entry = false, false
  for j = 1, #probes do
    if found[j] then
      prefix, entry = probes[j], found[j]
      break
    end
  end
  lcr[#lcr + 1] = prefix
  lcr[#lcr + 1] = entry
end
local did = redis.call('HGET', did_hash, params.number)
local did_rt = false
if not did and params.did_rt then did_rt = redis.call('GET', did_readthrough) end
local ids = {}
for _, id in ipairs(params.registrations) do ids[#ids + 1] = id end
local stored = did or did_rt
if stored then
  local ok, doc = pcall(cjson.decode, stored)
  if ok and type(doc) == 'table' and type(doc.trunk) == 'table' and doc.trunk.id then
    ids[#ids + 1] = doc.trunk.id
  end
end
local regs = registrations(params.registration_prefix, ids)
local admission = false
if type(params.admit) == 'table' then
  admission = admit({KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]}, params.admit)
end
local breakers, quality = KEYS[13], KEYS[14]
local states = redis.call('HGETALL', breakers)
local summaries = {}
if params.quality then summaries = redis.call('HGETALL', quality) end
return {cur, lcr, did, did_rt, regs, admission, states, summaries}
