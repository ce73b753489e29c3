"""Canonical form of telephone numbers: ASCII digits, E.164 without the plus.

Rules, applied in this order (docs/api.md repeats them for operators):
1. Surrounding white space is dropped; visual separators inside the number
   (space, `-`, `.`, `(`, `)`) are removed.
2. A leading `+` marks an international number and is removed.
3. Otherwise a leading `00` is the international call prefix and is removed.
   (`011` is not recognised: it is ambiguous with national numbers; rules can
   transform it explicitly.)
4. What remains must be 1 to 15 ASCII digits (E.164's maximum). Anything else,
   including non-ASCII digits such as Arabic-Indic or full-width ones, letters,
   `*`, `#` or URI parameters, is rejected rather than guessed at.
"""

from __future__ import annotations

from sipdata.errors import InputError

MAX_DIGITS = 15
_SEPARATORS = str.maketrans("", "", " -.()")
_ASCII_DIGITS = frozenset("0123456789")


def canonical(raw: str, field: str = "number") -> str:
    """Return the canonical digits of `raw`, or raise InputError naming `field`."""
    text = raw.strip().translate(_SEPARATORS)
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not text:
        raise InputError(f"{field} is empty", field=field)
    if not _ASCII_DIGITS.issuperset(text):
        raise InputError(f"{field} must contain only ASCII digits", field=field)
    if len(text) > MAX_DIGITS:
        raise InputError(f"{field} has more than {MAX_DIGITS} digits", field=field)
    return text


def canonical_or_none(raw: str | None) -> str | None:
    """Canonical digits, or None where `raw` is absent or not a number (e.g. a From name)."""
    if raw is None:
        return None
    try:
        return canonical(raw)
    except InputError:
        return None


def prefixes(number: str) -> list[str]:
    """Every prefix of `number`, longest first (what a longest-prefix probe asks for)."""
    return [number[:n] for n in range(len(number), 0, -1)]
