"""Every Redis key pattern, TTL and Lua script of sipdata, with why.

Two families of keys:

*Generation data* (owned by the warmer). A full load writes a new generation
`g{n}` of hashes, then one script switches `routing:current` to it, so a
reader sees either the old generation or the new one, never a half-loaded
deck. Hashes (field = lookup key) rather than one key per entry make the
switch and the cleanup O(1) per kind: the superseded generation is given an
expiry of `generation_grace_s` and vanishes on its own, and a build that dies
half-way leaves hashes that expire after `BUILD_TTL_S`. The seed's
`route:lcr:{prefix}` and `route:custom:{org_id}:{pattern}` keep their meaning
as fields of `route:lcr:g{n}` (field = prefix, value = the seed's list of
`{carrier_id, rate, priority}` plus provenance) and `route:custom:g{n}`
(field = org id, value = the org's rules, patterns inside).

*Live keys* (seed names, written by the write-back and read-through paths),
each with a TTL: `registration:{trunk_id}` (expires with the registration),
`trunks:online` (a set the warmer and registrar keep in step), `rt:*`
read-through entries (short TTLs so the database stays the truth).

Requires a standalone or Sentinel Redis (the scripts compute key names) with
`maxmemory-policy noeviction`: an evicted generation field would read as
"not found" instead of as a cache miss.
"""

from __future__ import annotations

from typing import Final

# -- generation data ------------------------------------------------------

CURRENT: Final = "routing:current"  # id of the serving generation (no TTL: the warmer owns it)
SEQUENCE: Final = "routing:seq"  # last generation id handed out (see NEXT_GENERATION_LUA)
HEARTBEAT: Final = "warmer:heartbeat"  # JSON of the last successful load; TTL 3 intervals
WARMER_LOCK: Final = "warmer:lock"  # SET NX: one warmer builds at a time across nodes

# A build is given this long before its half-written hashes expire on their own.
BUILD_TTL_S: Final = 900

# Hash kinds of one generation: name prefix -> what a field holds.
KIND_MANIFEST: Final = "routing:manifest:g"  # plain JSON string: counts, ACL prefix lengths
KIND_CRED: Final = "cred:g"  # digest username -> Credential
KIND_ACL: Final = "acl:g"  # CIDR -> [Trunk] (IP-authenticated owners)
KIND_DID: Final = "did:g"  # canonical number -> Did
KIND_LCR: Final = "route:lcr:g"  # prefix -> [rate row]
KIND_CUSTOM: Final = "route:custom:g"  # org id -> {"rules": [...], "targets": {id: Trunk}}
KIND_CUSTOM_TARGETS: Final = (
    "route:custom:targets:g"  # org id -> "id id ..." needing a registration
)
KIND_CARRIER: Final = "carriers:g"  # carrier org id -> Carrier with gateways

GENERATION_KINDS: Final = (
    KIND_MANIFEST,
    KIND_CRED,
    KIND_ACL,
    KIND_DID,
    KIND_LCR,
    KIND_CUSTOM,
    KIND_CUSTOM_TARGETS,
    KIND_CARRIER,
)


def gen_key(kind: str, gen: int) -> str:
    return f"{kind}{gen}"


# -- live keys --------------------------------------------------------------

TRUNKS_ONLINE: Final = "trunks:online"


def registration(trunk_id: str) -> str:
    """Seed key; TTL = the registration's remaining expiry, so it dies with it."""
    return f"registration:{trunk_id}"


def registration_gone(trunk_id: str) -> str:
    """Marker of a de-registration (see REGISTER_LUA); TTL = the longest registration."""
    return f"registration:{trunk_id}:gone"


def readthrough(kind: str, key: str) -> str:
    """A database answer cached after a miss: `rt:{kind}:{key}`, TTL from Settings."""
    return f"rt:{kind}:{key}"


# Call reports from Kamailio, appended once validated: an entry here is a
# report sipdata has acknowledged. The drainer (consumer group DRAIN_GROUP)
# writes CDRs from them and then deletes them; nothing trims the stream, so an
# acknowledged report is never dropped to make room. An entry of either report
# stream that can never be written (no org to bill, a corrupt registration, a
# row the database refuses) moves to CALL_EVENTS_DEAD, with `from`, `why` and
# `at` fields, for a human: `sipdata dead-letters` lists and replays them.
# Nothing trims it either.
CALL_EVENTS: Final = "calls:events"
CALL_EVENTS_DEAD: Final = "calls:dead"
# Report identity -> its dead letter's id, so a report Kamailio sent twice (a
# retransmission both copies of which were acknowledged) is one dead letter,
# as it is one CDR. Owned with the dead stream: an entry leaves on replay.
CALL_EVENTS_DEAD_INDEX: Final = "calls:dead:index"
# Registration reports acknowledged while the database was away: applied to
# Redis at once, to the database by the drainer when it is back.
REGISTRATION_QUEUE: Final = "registrations:queue"
DRAIN_GROUP: Final = "sipdata-drainer"

# -- admission ----------------------------------------------------------------
# A channel is a lease keyed by Call-ID: `lease:{call_id}` (hash: the channel
# sets it sits in, and the decision's destinations for rating) and one member
# per limit scope in `channels:{trunk|org|rule}:{id}` (sorted set, member =
# Call-ID, score = when the lease lapses, in ms). Counting is ZCARD after
# dropping lapsed members, so a lost report can only make a lease lapse, never
# a count go negative or stick. Every set and lease carries a PEXPIRE at least
# as long as its longest member, so none outlives its calls.
CHANNEL_TRUNKS: Final = "channels:trunks"  # trunk ids with leases, for the write-back


def lease(call_id: str) -> str:
    return f"lease:{call_id}"


def channels(scope: str, scope_id: str) -> str:
    return f"channels:{scope}:{scope_id}"


def call_rate(trunk_id: str, window: int) -> str:
    """Seed key: admissions of a trunk in one-second window `window` (TTL 2 s)."""
    return f"rate:calls:{trunk_id}:{window}"


# The value a read-through entry holds for "the database has no such row".
NEGATIVE: Final = b"-"

# -- scripts ----------------------------------------------------------------

# Next generation id: above the last one and at least the wall clock in ms, so
# ids stay unique when Redis restarts empty (a process still holding "g7" from
# before must never mistake a new, different g7 for the one it knows).
# KEYS[1] = SEQUENCE; ARGV[1] = now in ms.
NEXT_GENERATION_LUA: Final = """
local n = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], n)
return n
"""

# Switch the serving generation, atomically with the expiry bookkeeping.
# Refuses to go backwards, so a slow warmer can never replace a newer load.
# KEYS[1] = CURRENT; ARGV[1] = new generation, ARGV[2] = grace seconds,
# ARGV[3..] = the kind prefixes.
SWITCH_LUA: Final = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new <= cur then return 0 end
for i = 3, #ARGV do
  redis.call('PERSIST', ARGV[i] .. new)
  if cur > 0 then redis.call('EXPIRE', ARGV[i] .. cur, ARGV[2]) end
end
redis.call('SET', KEYS[1], new)
return 1
"""

# {trunk id, registration ('' = none), ...} of the given trunks (registration:{id}).
REGISTRATIONS_FN: Final = """
local function registrations(ids)
  local regs = {}
  for _, id in ipairs(ids) do
    regs[#regs + 1] = id
    regs[#regs + 1] = redis.call('GET', 'registration:' .. id) or ''
  end
  return regs
end
"""

# The second round trip of an INVITE decision: the caller org's rules plus the
# registrations of every trunk the answer may need (the DID's trunk, and the
# rule targets that have no static address), in one call.
# KEYS[1] = route:custom:g{n}, KEYS[2] = route:custom:targets:g{n};
# ARGV[1] = org id ('' for none), ARGV[2..] = further trunk ids.
ORG_ROUTING_LUA: Final = (
    REGISTRATIONS_FN
    + """
local rules = false
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if ARGV[1] ~= '' then
  rules = redis.call('HGET', KEYS[1], ARGV[1])
  local targets = redis.call('HGET', KEYS[2], ARGV[1])
  if targets then
    for id in string.gmatch(targets, '%S+') do ids[#ids + 1] = id end
  end
end
return {rules, registrations(ids)}
"""
)

# Apply one registration report to Redis unless a newer one is there already
# (two reports of one trunk can race between the database and Redis): newer by
# Kamailio's clock, or the same registration (Call-ID) at a higher CSeq. Going
# offline leaves a marker (`registration_gone`) holding the order fields for as
# long as a registration can last, so a late, older report cannot bring the
# binding back. KEYS[1] = registration:{id}, KEYS[2] = TRUNKS_ONLINE,
# KEYS[3] = registration:{id}:gone; ARGV[1] = trunk id, ARGV[2] = value JSON
# ('' = offline), ARGV[3] = TTL s, ARGV[4] = the report's ts, ARGV[5] its
# Call-ID, ARGV[6] its CSeq, ARGV[7] = how long a marker stays (s).
REGISTER_LUA: Final = """
for _, key in ipairs({KEYS[1], KEYS[3]}) do
  local old = redis.call('GET', key)
  if old then
    local ok, doc = pcall(cjson.decode, old)
    if ok and type(doc) == 'table' then
      if tonumber(doc['ts'] or 0) > tonumber(ARGV[4]) then return 0 end
      if doc['call_id'] == ARGV[5] and tonumber(doc['cseq'] or 0) > tonumber(ARGV[6]) then
        return 0
      end
    end
  end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], cjson.encode({ts = tonumber(ARGV[4]), call_id = ARGV[5],
    cseq = tonumber(ARGV[6])}), 'EX', ARGV[7])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
end
return 1
"""

# Admit a call unless a limit is full; the check and the admission are one
# step. KEYS: 1 lease, 2 trunk set, 3 org set, 4 rule set, 5 rate window
# counter, 6 CHANNEL_TRUNKS. ARGV: 1 call id, 2 now ms, 3 pending lease ms,
# 4 set lifetime ms, 5 trunk max, 6 org max, 7 rule max, 8 rule id ('' = no
# rule limit), 9 calls-per-second max, 10 window counter TTL s, 11 trunk id,
# 12 lease doc. A limit < 0 is none. Answers ok | dup (this Call-ID holds a
# lease already: a retransmission or the INVITE after a 407 counts once) |
# trunk | org | rule | rate (the full limit).
ADMIT_FN: Final = """
local function admit(K, A)
  if redis.call('EXISTS', K[1]) == 1 then return 'dup' end
  local now = tonumber(A[2])
  local sets = {{K[2], tonumber(A[5]), 'trunk'}, {K[3], tonumber(A[6]), 'org'}}
  if A[8] ~= '' then sets[3] = {K[4], tonumber(A[7]), 'rule'} end
  for _, s in ipairs(sets) do
    redis.call('ZREMRANGEBYSCORE', s[1], '-inf', now)
    if s[2] >= 0 and redis.call('ZCARD', s[1]) >= s[2] then return s[3] end
  end
  local cps = tonumber(A[9])
  if cps >= 0 and tonumber(redis.call('GET', K[5]) or '0') >= cps then return 'rate' end
  local tracked = {}
  for _, s in ipairs(sets) do
    redis.call('ZADD', s[1], now + tonumber(A[3]), A[1])
    redis.call('PEXPIRE', s[1], A[4])
    tracked[#tracked + 1] = s[1]
  end
  if cps >= 0 then
    redis.call('INCR', K[5])
    redis.call('EXPIRE', K[5], A[10])
  end
  redis.call('SADD', K[6], A[11])
  redis.call('PEXPIRE', K[6], A[4])
  redis.call('HSET', K[1], 'sets', table.concat(tracked, ' '), 'doc', A[12])
  redis.call('PEXPIRE', K[1], A[3])
  return 'ok'
end
"""
ADMIT_LUA: Final = ADMIT_FN + "return admit(KEYS, ARGV)\n"

# The decision's one round trip once the caller and its rules are known from
# the process's memo of the serving generation (service.Service._one_round):
# the generation check, the longest stored LCR entry of each number asked for,
# the DID and (for calls from carriers) its read-through entry, the
# registrations of the trunks the call may go to (the DID's own trunk, found
# here, and the rule targets named by the caller), and the admission
# (ADMIT_FN) the call will need if it routes. Admitting before the route is
# known saves the round trip; a call that then does not route gives its lease
# back (RELEASE_LUA). A generation that is no longer current answers
# {current} alone and admits nothing.
# KEYS: 1 CURRENT, 2 the LCR hash, 3 the DID hash, 4 the DID's read-through
# key, 5-10 ADMIT_FN's KEYS. ARGV[1]: one JSON object (a single argument costs
# the client a fraction of packing thirty): gen (text), number, did_rt (bool:
# read the DID's read-through key), numbers (to probe), registrations (trunk
# ids), admit (ADMIT_FN's ARGV as an array; absent = do not admit).
# Answers {current, {prefix, entry per number (false, false: none)}, did,
# did read-through, {trunk id, registration ('' = none), ...}, admission}.
DECIDE_LUA: Final = (
    ADMIT_FN
    + REGISTRATIONS_FN
    + """
local p = cjson.decode(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur ~= p.gen then return {cur or false} end
local lcr = {}
for _, number in ipairs(p.numbers) do
  local probes = {}
  for len = #number, 1, -1 do probes[#probes + 1] = string.sub(number, 1, len) end
  local found = redis.call('HMGET', KEYS[2], unpack(probes))
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
local did = redis.call('HGET', KEYS[3], p.number)
local did_rt = false
if not did and p.did_rt then did_rt = redis.call('GET', KEYS[4]) end
local ids = {}
for _, id in ipairs(p.registrations) do ids[#ids + 1] = id end
local stored = did or did_rt
if stored then
  local ok, doc = pcall(cjson.decode, stored)
  if ok and type(doc) == 'table' and type(doc.trunk) == 'table' and doc.trunk.id then
    ids[#ids + 1] = doc.trunk.id
  end
end
local regs = registrations(ids)
local admission = false
if type(p.admit) == 'table' then
  admission = admit({KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}, p.admit)
end
return {cur, lcr, did, did_rt, regs, admission}
"""
)

# Give back a lease taken by DECIDE_LUA for a call that did not route after all
# (the calls-per-second window keeps its count: that limit counts attempts).
# KEYS[1] = the lease; ARGV[1] = the call id.
RELEASE_LUA: Final = """
local sets = redis.call('HGET', KEYS[1], 'sets')
if sets then
  for key in string.gmatch(sets, '%S+') do redis.call('ZREM', key, ARGV[1]) end
  redis.call('DEL', KEYS[1])
end
return 1
"""

# Lease documents (the routed call's destinations, for rating its CDR) land
# after the decision answered, many per call: KEYS = leases, ARGV = their
# documents. A lease already gone (released, lapsed) is not brought back.
LEASE_DOCS_LUA: Final = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 'doc', ARGV[i]) end
end
return #KEYS
"""


# A call report: move the lease on and append the report to CALL_EVENTS, in
# one step (acknowledged = in the stream = lease updated). start extends the
# lease to the ringing time, answer to the longest call; neither ever shortens
# it (GT), so a late start after an answer changes nothing. end and fail
# release it. No lease (unknown call, lapsed lease, repeated end) = no change.
# The lease doc travels with the report for rating. Answers the entry id.
CALL_EVENT_FN: Final = """
local function call_event(lease, stream, call_id, event, now, ringing, longest, set_ms, report)
  local sets = redis.call('HGET', lease, 'sets')
  local doc = ''
  if sets then
    doc = redis.call('HGET', lease, 'doc') or ''
    if event == 'end' or event == 'fail' then
      for key in string.gmatch(sets, '%S+') do redis.call('ZREM', key, call_id) end
      redis.call('DEL', lease)
    else
      local ttl = tonumber(ringing)
      if event == 'answer' then ttl = tonumber(longest) end
      local expiry = tonumber(now) + ttl
      for key in string.gmatch(sets, '%S+') do
        redis.call('ZADD', key, 'GT', expiry, call_id)
        redis.call('PEXPIRE', key, set_ms)
      end
      redis.call('PEXPIRE', lease, ttl, 'GT')
    end
  end
  return redis.call('XADD', stream, '*', 'event', report, 'lease', doc)
end
"""

# Call reports in one step, each through CALL_EVENT_FN (Kamailio sends them in
# batches; a single report is a batch of one). KEYS: the leases, then
# CALL_EVENTS last. ARGV: 1 now ms, 2 ringing ms, 3 longest call ms, 4 set
# lifetime ms, then per report: call id, event, report JSON. Answers the
# stream entry ids, in order.
CALL_EVENTS_LUA: Final = (
    CALL_EVENT_FN
    + """
local stream = KEYS[#KEYS]
local ids = {}
for i = 1, #KEYS - 1 do
  local a = 4 + (i - 1) * 3
  ids[i] = call_event(KEYS[i], stream, ARGV[a + 1], ARGV[a + 2], ARGV[1], ARGV[2], ARGV[3],
    ARGV[4], ARGV[a + 3])
end
return ids
"""
)

# Live channel counts per trunk (lapsed leases dropped first).
# KEYS[1] = CHANNEL_TRUNKS; ARGV[1] = now ms. Answers [id, n, id, n, ...].
CHANNEL_COUNTS_LUA: Final = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = 'channels:trunk:' .. id
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  local n = redis.call('ZCARD', key)
  if n == 0 then redis.call('SREM', KEYS[1], id) end
  out[#out + 1] = id
  out[#out + 1] = n
end
return out
"""

# Drop members of trunks:online whose registration key has expired; the set
# itself has no TTL (it is owned by the warmer and the registrar).
PRUNE_ONLINE_LUA: Final = """
local removed = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', 'registration:' .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
    removed = removed + 1
  end
end
return removed
"""


# Move a stream entry to the dead letters, in one step with its
# acknowledgement, unless the same report (ARGV[3], its identity) is a dead
# letter already. KEYS: 1 the report stream, 2 CALL_EVENTS_DEAD,
# 3 CALL_EVENTS_DEAD_INDEX. ARGV: 1 DRAIN_GROUP, 2 entry id, 3 report identity,
# 4.. the dead letter's field/value pairs. Answers 1 if a dead letter was added.
DEAD_LETTER_LUA: Final = """
local added = 0
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then
  local fields = {}
  for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
  local id = redis.call('XADD', KEYS[2], '*', 'key', ARGV[3], unpack(fields))
  redis.call('HSET', KEYS[3], ARGV[3], id)
  added = 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return added
"""

# Dead letters back to the stream they came from, each in one step (so a
# replay racing another cannot lose an entry; a doubled one is harmless, the
# drainer's writes are idempotent). KEYS: 1 CALL_EVENTS_DEAD,
# 2 CALL_EVENTS_DEAD_INDEX, then the report streams a `from` may name. ARGV:
# entry ids. Returns how many moved; an id that is gone, or names a stream not
# in KEYS, stays where it is.
REPLAY_DEAD_LUA: Final = """
local moved = 0
for _, id in ipairs(ARGV) do
  local got = redis.call('XRANGE', KEYS[1], id, id)
  if #got == 1 then
    local fields, out, target, key = got[1][2], {}, nil, nil
    for i = 1, #fields, 2 do
      local k, v = fields[i], fields[i + 1]
      if k == 'from' then
        for j = 3, #KEYS do
          if KEYS[j] == v then target = v end
        end
      elseif k == 'key' then
        key = v
      elseif k ~= 'why' and k ~= 'at' then
        out[#out + 1] = k
        out[#out + 1] = v
      end
    end
    if target and #out > 0 then
      redis.call('XADD', target, '*', unpack(out))
      redis.call('XDEL', KEYS[1], id)
      if key then redis.call('HDEL', KEYS[2], key) end
      moved = moved + 1
    end
  end
end
return moved
"""
