"""Admin bodies for routing rules and phone numbers (pure): a rule is refused unless the
decision would compile it (decide/rules.parse_rule), with the reason and the field."""

from __future__ import annotations

import re
from typing import Any

from sipdata.admin.validate import (
    STATUSES,
    Body,
    choice,
    integer,
    metadata,
    only_fields,
    present,
    text,
    uuid_text,
)
from sipdata.decide import rules
from sipdata.decide.numbers import canonical
from sipdata.errors import InputError

RULE_FIELDS = (
    "org_id",
    "trunk_id",
    "name",
    "priority",
    "enabled",
    "match_type",
    "match_pattern",
    "time_condition",
    "action",
    "destination",
    "transform_rules",
    "weight",
    "max_calls",
    "metadata",
)
# Words in parse_rule's messages, to name the field a refusal is about (first wins).
_RULE_FIELD_WORDS = (
    ("destination", "destination"),
    ("reject", "destination"),
    ("match_type", "match_type"),
    ("action ", "action"),
    ("match_pattern", "match_pattern"),
    ("time", "time_condition"),
    ("day", "time_condition"),
    ("transform", "transform_rules"),
    ("weight", "weight"),
    ("priority", "priority"),
    ("max_calls", "max_calls"),
)


def _flag(body: Body, name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InputError("must be true or false", field=name)
    return value


def _object(body: Body, name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise InputError("must be a JSON object", field=name)
    return value


def rule_changes(body: Body, *, create: bool) -> dict[str, Any]:
    """The columns a body sets, each typed; compile the merged row with `compiled`."""
    only_fields(body, RULE_FIELDS if create else RULE_FIELDS[1:])
    trunk = body.get("trunk_id")
    out = present(
        org_id=uuid_text(body["org_id"], "org_id") if body.get("org_id") is not None else None,
        trunk_id=uuid_text(trunk, "trunk_id") if trunk is not None else None,
        name=text(body, "name", required=create),
        priority=integer(body, "priority", -1_000_000, 1_000_000),
        enabled=_flag(body, "enabled"),
        match_type=choice(body, "match_type", rules.MATCH_TYPES),
        match_pattern=text(body, "match_pattern", required=create),
        time_condition=_object(body, "time_condition"),
        action=choice(body, "action", rules.ACTIONS),
        destination=text(body, "destination", required=False),
        transform_rules=_object(body, "transform_rules"),
        weight=integer(body, "weight", 0, 1_000_000),
        max_calls=integer(body, "max_calls", 0, 1_000_000),
        metadata=metadata(body),
    )
    if create and "action" not in out:
        raise InputError("is required", field="action")
    if not out:
        raise InputError("nothing to change", field=None)
    return out


def compiled(row: dict[str, Any]) -> rules.Rule:
    """The rule as decisions will read it, or an InputError with parse_rule's reason."""
    try:
        return rules.parse_rule({"id": row.get("id") or "new", **row})
    except rules.RuleError as exc:
        message = str(exc)
        field = next((f for word, f in _RULE_FIELD_WORDS if word in message), None)
        raise InputError(
            f"the decision would not compile this rule: {message}", field=field
        ) from None


NUMBER_FIELDS = (
    "number",
    "country_code",
    "number_type",
    "org_id",
    "trunk_id",
    "voice_enabled",
    "status",
    "metadata",
)
NUMBER_STATUSES = ("available", *STATUSES)


def number_changes(body: Body, *, create: bool) -> dict[str, Any]:
    only_fields(body, NUMBER_FIELDS if create else NUMBER_FIELDS[3:])
    raw = text(body, "number", required=create, limit=40)
    country = text(body, "country_code", required=create, limit=5)
    if country is not None and not re.fullmatch(r"[0-9]{1,5}", country):
        raise InputError("must be 1 to 5 digits", field="country_code")
    trunk = body.get("trunk_id")
    out = present(
        number=canonical(raw, "number") if raw is not None else None,
        country_code=country,
        number_type=text(body, "number_type", required=False, limit=20),
        org_id=uuid_text(body["org_id"], "org_id") if body.get("org_id") is not None else None,
        trunk_id=uuid_text(trunk, "trunk_id") if trunk is not None else None,
        voice_enabled=_flag(body, "voice_enabled"),
        status=choice(body, "status", NUMBER_STATUSES),
        metadata=metadata(body),
    )
    if not out:
        raise InputError("nothing to change", field=None)
    return out
