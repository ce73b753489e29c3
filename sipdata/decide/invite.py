"""The combined INVITE decision: who is calling, may they, and where the call goes.

Two pure steps, so the service can fetch what the second needs once the
first has named the caller:

1. `identify`: a source address that an IP-authenticated trunk owns names the
   caller; otherwise digest credentials do (the HA1 comes back for Kamailio to
   verify); otherwise the caller is challenged.
2. `route`: calls from a carrier's gateway are inbound and go to the DID's
   trunk; calls from customers take the org's matching rules in order, else an
   on-net DID, else least-cost routing.

Reject codes are deliberate (docs/api.md lists them): 403 for callers that
may not call, 404 for numbers with no route, 480 for a destination trunk that
cannot be reached now, 484 for a malformed number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sipdata.decide import lcr, offers
from sipdata.decide.acl import IPAddress, contains
from sipdata.decide.digest import normalise_algorithm
from sipdata.decide.models import Carrier, Credential, Did, Registration, Trunk
from sipdata.decide.numbers import MAX_DIGITS
from sipdata.decide.offers import Health, Policy
from sipdata.decide.quality import QualityConfig
from sipdata.decide.routes import Leg, dedupe, forward_uri, rtjson, trunk_leg
from sipdata.decide.rules import Rule


@dataclass(frozen=True, slots=True)
class InviteQuery:
    source_ip: IPAddress
    to: str  # canonical called number
    from_number: str | None
    call_id: str
    auth_user: str | None = None
    auth_realm: str | None = None
    auth_algorithm: str | None = None
    # Decide without taking a channel (operators' probes; never Kamailio).
    dry_run: bool = False
    # The edge's answer: one flat object of what its script reads (to_brief).
    brief: bool = False


@dataclass(frozen=True, slots=True)
class Identity:
    trunk: Trunk
    method: str  # "ip" | "digest"
    acl_network: str | None = None
    ha1: str | None = None
    algorithm: str | None = None
    realm: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str  # route | challenge | reject
    code: int
    reason: str
    identity: Identity | None = None
    legs: tuple[Leg, ...] = ()
    explain: dict[str, Any] = field(default_factory=dict)

    def to_brief(self) -> dict[str, Any]:
        """What the Kamailio script reads, flat: it decodes the answer once into an
        xavp, whose fields are the top-level members (nested ones arrive as text)."""
        out: dict[str, Any] = {"verdict": self.verdict, "code": self.code, "reason": self.reason}
        ident = self.identity
        if ident is not None:
            out["trunk_id"] = ident.trunk.id
            out["org_id"] = ident.trunk.org_id
            out["identified_by"] = ident.method
            if ident.method == "digest":
                out["ha1"] = ident.ha1
                out["realm"] = ident.realm
        elif self.verdict == "challenge":
            out["realm"] = self.explain.get("realm")
        if self.verdict == "route":
            out["routing"] = rtjson(self.legs)
            held = self.explain.get("credit")
            if held and held.get("held"):
                # the longest the org's credit pays for: Kamailio's dialog timeout
                out["max_s"] = held["max_s"]
        return out

    def to_json(self, brief: bool = False) -> dict[str, Any]:
        """The whole answer, or with `brief` the edge's flat one (to_brief)."""
        if brief:
            return self.to_brief()
        out: dict[str, Any] = {"verdict": self.verdict, "code": self.code, "reason": self.reason}
        ident = self.identity
        if ident is not None:
            out["caller"] = {**ident.trunk.public(), "identified_by": ident.method}
            if ident.method == "digest":
                out["auth"] = {"ha1": ident.ha1, "algorithm": ident.algorithm, "realm": ident.realm}
        if self.verdict == "route":
            out["routing"] = rtjson(self.legs)
            out["legs"] = [leg.explain() for leg in self.legs]
        out["explain"] = self.explain
        return out


def reject(code: int, reason: str, identity: Identity | None = None, **explain: Any) -> Verdict:
    return Verdict("reject", code, reason, identity, explain=explain)


def challenge(realm: str) -> Verdict:
    return Verdict("challenge", 407, "Proxy Authentication Required", explain={"realm": realm})


def _refuse_unusable(trunk: Trunk, identity: Identity | None = None) -> Verdict | None:
    if trunk.org_status != "active":
        return reject(403, "Account Suspended", identity, org_status=trunk.org_status)
    if trunk.status != "active":
        return reject(403, "Trunk Suspended", identity, trunk_status=trunk.status)
    return None


def sole_ip_owner(owners: Sequence[Trunk]) -> Trunk | None:
    """The one IP-authenticated trunk among a network's owners; None when there is
    none, or several that a source address cannot tell apart (digest decides then)."""
    ip_owners = [t for t in owners if t.auth_type == "ip"]
    return ip_owners[0] if len(ip_owners) == 1 else None


def identify(
    query: InviteQuery,
    acl_hit: tuple[str, Sequence[Trunk]] | None,
    credential: Credential | None,
    realm: str,
) -> Identity | Verdict:
    """Step 1: the calling trunk, or the challenge / reject that stands instead."""
    explain: dict[str, Any] = {}
    if acl_hit is not None:
        network, owners = acl_hit
        trunk = sole_ip_owner(owners)
        if trunk is not None:
            identity = Identity(trunk, "ip", acl_network=network)
            return _refuse_unusable(trunk) or identity
        # Several owners of one network cannot be told apart by address: digest decides.
        explain["acl_ambiguous"] = network
    if query.auth_user is None:
        return challenge(realm)
    if credential is None:
        return reject(403, "Forbidden", auth_user=query.auth_user, **explain)
    return check_credential(credential, query.source_ip, query.auth_realm, query.auth_algorithm)


def check_credential(
    credential: Credential,
    source_ip: IPAddress | None,
    realm: str | None,
    algorithm: str | None,
) -> Identity | Verdict:
    """Whether a digest trunk may call (from `source_ip`, when known), and its HA1.

    A refusal never carries an HA1, so a suspended trunk cannot be verified at all.
    """
    trunk = credential.trunk
    refused = _refuse_unusable(trunk)
    if refused is not None:
        return refused
    if source_ip is not None and trunk.networks and not contains(trunk.networks, source_ip):
        return reject(403, "Source Address Not Allowed", trunk_id=trunk.id)
    if realm and realm != credential.ha1.realm:
        return reject(403, "Wrong Realm", expected_realm=credential.ha1.realm)
    name = normalise_algorithm(algorithm)
    ha1 = credential.ha1.for_algorithm(name) if name else None
    if ha1 is None:
        return reject(403, "Unsupported Digest Algorithm", algorithm=algorithm)
    return Identity(trunk, "digest", ha1=ha1, algorithm=name, realm=credential.ha1.realm)


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    """Everything step 2 reads, fetched by the service after step 1."""

    did: Did | None
    rules: Sequence[Rule]
    registrations: Mapping[str, Registration]
    lcr_entries: Mapping[str, tuple[str, Sequence[lcr.RateRow]] | None]  # number -> entry
    carriers: Mapping[str, Carrier]
    trunks: Mapping[str, Trunk]  # rule target trunks
    health: Health = field(default_factory=Health)  # gateway states, carrier quality
    quality_config: QualityConfig = field(default_factory=QualityConfig)


def did_verdict(
    did: Did | None,
    number: str,
    registration: Registration | None,
    identity: Identity | None = None,
    explain: dict[str, Any] | None = None,
) -> Verdict:
    """Where a call to this DID goes (its trunk, at its registration or static
    address), or why it cannot: the one rule for calls from carriers, on-net calls
    and `/v1/did`'s `routable`."""
    explain = {} if explain is None else explain
    explain["did"] = number
    if did is None or did.status != "active" or did.trunk is None:
        return reject(404, "Not Found", identity, **explain)
    if not did.voice_enabled:
        return reject(403, "Voice Not Enabled", identity, **explain)
    if not did.trunk.usable:
        return reject(403, "Destination Suspended", identity, **explain)
    leg = trunk_leg(did.trunk, registration, number, "did", None)
    if leg is None:
        return reject(
            480, "Temporarily Unavailable", identity, not_registered=did.trunk.id, **explain
        )
    return Verdict("route", 200, "OK", identity, (leg,), explain)


def _lcr_legs(
    number: str,
    facts: RoutingFacts,
    day: dt.date,
    *,
    explain: dict[str, Any],
    rule_id: str | None,
    policy: Policy,
) -> list[Leg]:
    legs, doc = offers.lcr_legs(
        number,
        facts.lcr_entries.get(number),
        day,
        carriers=facts.carriers,
        policy=policy,
        health=facts.health,
        rule_id=rule_id,
    )
    explain.setdefault("lcr", []).append(doc)
    return legs


def _rule_legs(
    rule: Rule,
    number: str,
    facts: RoutingFacts,
    day: dt.date,
    *,
    explain: dict[str, Any],
    policy: Policy,
) -> list[Leg]:
    target = rule.transform.apply(number)
    if not (target.isascii() and target.isdigit() and 0 < len(target) <= MAX_DIGITS):
        explain.setdefault("transform_invalid", []).append(rule.id)
        return []
    if rule.action == "lcr":
        return _lcr_legs(target, facts, day, explain=explain, rule_id=rule.id, policy=policy)
    if rule.action == "forward":
        return [
            Leg(uri=forward_uri(rule.destination or "", target), kind="forward", rule_id=rule.id)
        ]
    trunk = facts.trunks.get(rule.destination or "")
    if trunk is None or not trunk.usable:
        return []
    leg = trunk_leg(trunk, facts.registrations.get(trunk.id), target, "trunk", rule.id)
    return [leg] if leg else []


def route(
    identity: Identity,
    query: InviteQuery,
    matched_rules: Sequence[Rule],
    facts: RoutingFacts,
    now: dt.datetime,
) -> Verdict:
    """Step 2: the destinations for an identified caller (rules already ordered)."""
    number = query.to
    day = now.astimezone(dt.UTC).date()
    explain: dict[str, Any] = {"method": identity.method}
    policy = Policy.of(identity.trunk, facts.quality_config)
    if identity.acl_network:
        explain["acl_network"] = identity.acl_network

    if identity.trunk.is_carrier:
        explain["direction"] = "inbound"
        return did_verdict(facts.did, number, _did_registration(facts), identity, explain)

    explain["direction"] = "outbound"
    legs: list[Leg] = []
    if matched_rules:
        explain["rules"] = [r.id for r in matched_rules]
        if matched_rules[0].action == "reject":
            code, reason = matched_rules[0].reject_code()
            return reject(code, reason, identity, **explain, rule_id=matched_rules[0].id)
        for rule in matched_rules:
            if rule.action == "reject":
                break  # a later reject ends the failover chain
            legs.extend(_rule_legs(rule, number, facts, day, explain=explain, policy=policy))
        legs = dedupe(legs)
        if not legs:
            return reject(480, "Temporarily Unavailable", identity, **explain)
        return Verdict("route", 200, "OK", identity, tuple(legs), explain)

    if facts.did is not None and facts.did.status == "active":
        explain["on_net"] = number
        return did_verdict(facts.did, number, _did_registration(facts), identity, explain)

    legs = dedupe(_lcr_legs(number, facts, day, explain=explain, rule_id=None, policy=policy))
    if not legs:
        return reject(404, "No Route", identity, **explain)
    return Verdict("route", 200, "OK", identity, tuple(legs), explain)


def _did_registration(facts: RoutingFacts) -> Registration | None:
    trunk = facts.did.trunk if facts.did else None
    return facts.registrations.get(trunk.id) if trunk else None
