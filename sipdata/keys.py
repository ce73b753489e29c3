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


def readthrough(kind: str, key: str) -> str:
    """A database answer cached after a miss: `rt:{kind}:{key}`, TTL from Settings."""
    return f"rt:{kind}:{key}"


# Call reports from Kamailio, appended once validated: an entry here is a
# report sipdata has acknowledged. The CDR writer consumes and deletes them
# (issue 4); nothing trims the stream, so an acknowledged report is never
# dropped to make room.
CALL_EVENTS: Final = "calls:events"

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

# The second round trip of an INVITE decision: the caller org's rules plus the
# registrations of every trunk the answer may need (the DID's trunk, and the
# rule targets that have no static address), in one call.
# KEYS[1] = route:custom:g{n}, KEYS[2] = route:custom:targets:g{n};
# ARGV[1] = org id ('' for none), ARGV[2..] = further trunk ids.
ORG_ROUTING_LUA: Final = """
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
local regs = {}
for _, id in ipairs(ids) do
  regs[#regs + 1] = id
  regs[#regs + 1] = redis.call('GET', 'registration:' .. id) or ''
end
return {rules, regs}
"""

# Apply one registration report to Redis unless a newer one is there already
# (two reports of one trunk can race between the database and Redis).
# KEYS[1] = registration:{id}, KEYS[2] = TRUNKS_ONLINE; ARGV[1] = trunk id,
# ARGV[2] = value JSON with a "ts" field ('' = offline), ARGV[3] = TTL s,
# ARGV[4] = the report's ts.
REGISTER_LUA: Final = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, doc = pcall(cjson.decode, old)
  if ok and type(doc) == 'table' and tonumber(doc['ts'] or 0) > tonumber(ARGV[4]) then
    return 0
  end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
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
