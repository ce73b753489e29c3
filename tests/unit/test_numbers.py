"""Number canonicalisation: the documented rules, as a table and as properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipdata.decide.numbers import MAX_DIGITS, canonical, canonical_or_none, prefixes
from sipdata.errors import InputError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12125551234", "12125551234"),
        ("+12125551234", "12125551234"),
        ("0044 20 7123 4567", "442071234567"),
        ("+1 (212) 555-1234", "12125551234"),
        ("1.212.555.1234", "12125551234"),
        ("  +44-20-7123-4567 ", "442071234567"),
        ("011442071234567", "011442071234567"),  # 011 is not guessed at
        ("0", "0"),
        ("1" * MAX_DIGITS, "1" * MAX_DIGITS),
    ],
)
def test_canonical_accepts(raw: str, expected: str) -> None:
    """Separators, a leading + or 00 are removed; what remains is the E.164 digits."""
    assert canonical(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("+", "empty"),
        ("00", "empty"),
        ("  -()  ", "empty"),
        ("1" * (MAX_DIGITS + 1), "more than 15"),
        ("+1" + "2" * 15, "more than 15"),
        ("\u0661\u0662\u0663", "ASCII"),  # Arabic-Indic digits
        ("\uff11\uff12\uff13", "ASCII"),  # full-width digits
        ("12a4", "ASCII"),
        ("*67", "ASCII"),
        ("1234#", "ASCII"),
        ("1234;phone-context=x", "ASCII"),
        ("++1234", "ASCII"),
    ],
)
def test_canonical_rejects_with_reason_and_field(raw: str, why: str) -> None:
    """Anything that is not 1..15 ASCII digits is refused with the reason and the field named."""
    with pytest.raises(InputError) as info:
        canonical(raw, "to")
    assert why in info.value.message
    assert info.value.field == "to"


@given(st.text(max_size=30))
def test_canonical_output_is_ascii_digits_or_error(raw: str) -> None:
    """Whatever text arrives, the answer is 1..15 ASCII digits or an InputError."""
    try:
        out = canonical(raw)
    except InputError:
        return
    assert out.isascii() and out.isdigit() and 1 <= len(out) <= MAX_DIGITS


@given(st.from_regex(r"\A[1-9][0-9]{0,14}\Z"))
def test_canonical_is_idempotent_and_plus_invariant(digits: str) -> None:
    """Canonical digits stay as they are, with or without + or 00 in front."""
    assert canonical(digits) == digits
    assert canonical("+" + digits) == digits
    assert canonical(canonical("00" + digits)) == digits


def test_canonical_or_none_tolerates_names() -> None:
    """A From user that is a name, not a number, is None rather than an error."""
    assert canonical_or_none("anonymous") is None
    assert canonical_or_none(None) is None
    assert canonical_or_none("+15551230000") == "15551230000"


@given(st.from_regex(r"\A[0-9]{1,15}\Z"))
def test_prefixes_longest_first_and_complete(number: str) -> None:
    """A number's probes are every prefix of it, longest first."""
    ps = prefixes(number)
    assert ps[0] == number
    assert [len(p) for p in ps] == list(range(len(number), 0, -1))
    assert all(number.startswith(p) for p in ps)
