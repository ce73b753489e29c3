"""Every Redis key pattern and TTL of sipdata, with why (the Lua scripts: `scripts/`).

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

Requires a standalone or Sentinel Redis (decide.lua and a few others build key
names from prefixes passed in from here, so their keys are not all in KEYS) with
`maxmemory-policy noeviction`: an evicted generation field would read as
"not found" instead of as a cache miss.
"""

from __future__ import annotations

from typing import Final

# -- generation data ------------------------------------------------------

CURRENT: Final = "routing:current"  # id of the serving generation (no TTL: the warmer owns it)
SEQUENCE: Final = "routing:seq"  # last generation id handed out (see scripts/next_generation.lua)
# JSON of the last full load, refreshed by the follower every HEARTBEAT_EVERY_S
# while it keeps up; /ready calls a heartbeat older than HEARTBEAT_STALE_S stale
# (several missed refreshes, not one slow round) and the key dies after
# HEARTBEAT_TTL_S, so a node that stopped following leaves no fresh-looking beat.
HEARTBEAT: Final = "warmer:heartbeat"
HEARTBEAT_EVERY_S: Final = 5.0
HEARTBEAT_STALE_S: Final = 30.0
HEARTBEAT_TTL_S: Final = 60
WARMER_LOCK: Final = "warmer:lock"  # SET NX: one warmer builds or patches at a time across nodes
# Bumped (INCR, no TTL) by every patch the follower applies to the serving
# generation and by every switch: each process polls it with the generation id
# and drops what it memoised, and read-through keys carry it, so a change
# orphans every cached database answer at once (they expire on their TTLs).
EPOCH: Final = "routing:epoch"

# A build is given this long before its half-written hashes expire on their own.
BUILD_TTL_S: Final = 900

# Hash kinds of one generation: name prefix -> what a field holds.
KIND_MANIFEST: Final = "routing:manifest:g"  # plain JSON string: counts, ACL prefix lengths
KIND_CRED: Final = "cred:g"  # digest username -> Credential
KIND_ACL: Final = "acl:g"  # CIDR -> [Trunk] (IP-authenticated owners)
KIND_DID: Final = "did:g"  # canonical number -> Did
KIND_LCR: Final = "route:lcr:g"  # prefix -> [rate row]
KIND_CUSTOM: Final = "route:custom:g"  # org id -> {"rules": [...], "targets": {id: Trunk}}
KIND_CARRIER: Final = "carriers:g"  # carrier org id -> Carrier with gateways
# trunk id -> {"user": digest username or null, "nets": [CIDR]}: what a trunk
# put into the generation, so a change to it finds the entries to rewrite.
KIND_TRUNK: Final = "trunks:g"

GENERATION_KINDS: Final = (
    KIND_MANIFEST,
    KIND_CRED,
    KIND_ACL,
    KIND_DID,
    KIND_LCR,
    KIND_CUSTOM,
    KIND_CARRIER,
    KIND_TRUNK,
)


def gen_key(kind: str, gen: int) -> str:
    return f"{kind}{gen}"


# -- live keys --------------------------------------------------------------

TRUNKS_ONLINE: Final = "trunks:online"


REGISTRATION_PREFIX: Final = "registration:"


def registration(trunk_id: str) -> str:
    """Seed key; TTL = the registration's remaining expiry, so it dies with it."""
    return f"{REGISTRATION_PREFIX}{trunk_id}"


def registration_gone(trunk_id: str) -> str:
    """Marker of a de-registration (see scripts/register.lua); TTL = the longest registration."""
    return f"registration:{trunk_id}:gone"


def readthrough(kind: str, key: str, epoch: int) -> str:
    """A database answer cached after a miss: `rt:{epoch}:{kind}:{key}`, TTL from
    Settings; a new EPOCH leaves every older answer unread."""
    return f"rt:{epoch}:{kind}:{key}"


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
# "This Redis has kept its leases since <ms>": set by the first full load into
# it (restore_channels.lua). Missing = Redis lost its data (or is new): the
# write-back then saves no counts (they would all read zero) until the warmer
# has put the database's last counts back as placeholder leases. No TTL: its
# absence is the signal. A replica has it too, so a failover restores nothing.
LEASES_KEPT: Final = "leases:kept"


def lease(call_id: str) -> str:
    return f"lease:{call_id}"


def ended(call_id: str) -> str:
    """Seed key: the call has ended (its end or fail report was stored), for
    lease_ringing_s. A question about it that arrives later (Kamailio gave up on
    that node and asked another; the first node got the request after a
    partition healed) must not take a channel that no end report will ever give
    back, and a start or answer sent again afterwards finds no lease to extend."""
    return f"ended:{call_id}"


def channels(scope: str, scope_id: str) -> str:
    return f"channels:{scope}:{scope_id}"


def call_rate(trunk_id: str, window: int) -> str:
    """Seed key: admissions of a trunk in one-second window `window` (TTL 2 s)."""
    return f"rate:calls:{trunk_id}:{window}"


# A call-rate window counts one second; it lives one more, for a clock edge.
CALL_RATE_TTL_S: Final = 2


# The value a read-through entry holds for "the database has no such row".
NEGATIVE: Final = b"-"


# -- admin API ------------------------------------------------------------------
def api_key(key_hash: str) -> str:
    """Seed key: an API key's row (id, org, scopes, limit, expiry, status) as JSON,
    by its hash, or NEGATIVE for "no such key". A second's TTL is the bound on how
    long a revoked or expired key keeps working on any node, and the only
    invalidation: nothing has to reach every node when a key is revoked."""
    return f"api_key:{key_hash}"


API_KEY_TTL_MS: Final = 1000


def api_rate(key_id: str, window: int) -> str:
    """Seed key: requests of one API key in fixed window `window` (a count; TTL two
    windows, so a key that stops asking leaves nothing behind)."""
    return f"rate:api:{key_id}:{window}"


# -- gateway health, quality, credit (docs/routing-health.md) -----------------
# Every carrier gateway's breaker that is not plainly closed (scripts/
# gateway_event.lua): field = "host:port", value = "state failures opened_ms".
# One small hash, no TTL: every decision reads all of it in its round trip, so
# a gateway judged down is left out by every node from the next decision on.
GATEWAY_BREAKERS: Final = "gateways:breakers"


def quality_bucket(carrier_id: str, prefix: str, bucket: int) -> str:
    """One minute of a carrier's outcomes (prefix "*" = all its prefixes): a hash of
    decide/quality.Tally's fields, kept QUALITY_BUCKET_TTL_S, past the longest window."""
    return f"quality:{carrier_id}:{prefix}:{bucket}"


QUALITY_BUCKET_TTL_S: Final = 3 * 3600
# Summaries over the window, rewritten as reports arrive (jobs/quality.py):
# field = carrier id (QUALITY_CARRIERS, read by decisions whose org routes by
# quality) or "carrier|prefix" (QUALITY_PREFIXES, for /v1/lcr and /metrics).
# Each value carries when it was made; one older than the window is ignored.
QUALITY_CARRIERS: Final = "quality:carriers"
QUALITY_PREFIXES: Final = "quality:prefixes"


def credit_account(org_id: str) -> str:
    """A credit-controlled org's account (scripts/credit*.lua): avail, reserved, version.
    No TTL: the loader keeps it, and losing it only means loading it again."""
    return f"credit:{org_id}"


def credit_holds(org_id: str) -> str:
    """Calls holding credit, scored with when each hold lapses (ms)."""
    return f"credit:{org_id}:holds"


def credit_held(org_id: str) -> str:
    """Call-ID -> "amount max_s" of each hold."""
    return f"credit:{org_id}:held"
