from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st
from policy_core.primitives.pii import (
    PII_TYPES,
    PiiMatch,
    contains_pii,
    find_pii,
    luhn_valid,
    pii_types,
)


def found(text: str) -> list[tuple[str, str]]:
    return [(m.type, text[m.start : m.end]) for m in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "write to john.doe+tag@mail.example.co.uk.",
            [("email", "john.doe+tag@mail.example.co.uk")],
        ),
        ("a@b.io", [("email", "a@b.io")]),
        ("a..b@example.com", [("email", "a..b@example.com")]),
        ("jöhn@x.org", [("email", "jöhn@x.org")]),
        ("0044-20-7946-0958", [("phone", "0044-20-7946-0958")]),
        ("Call +1 (415) 555-2671 now", [("phone", "+1 (415) 555-2671")]),
        ("(415) 555-2671", [("phone", "(415) 555-2671")]),
        ("415.555.2671 or 415-555-2671", [("phone", "415.555.2671"), ("phone", "415-555-2671")]),
        ("1-800-555-0199", [("phone", "1-800-555-0199")]),
        ("+14155552671", [("phone", "+14155552671")]),
        ("+44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
        ("+44 (0)20 7946 0958", [("phone", "+44 (0)20 7946 0958")]),
        ("0044 20 7946 0958", [("phone", "0044 20 7946 0958")]),
        ("020 7946 0958", [("phone", "020 7946 0958")]),
        ("+33 1 23 45 67 89", [("phone", "+33 1 23 45 67 89")]),
        ("01 23 45 67 89", [("phone", "01 23 45 67 89")]),
        ("SSN 123-45-6789.", [("ssn", "123-45-6789")]),
        ("ssn 123 45 6789", [("ssn", "123 45 6789")]),
        ("4111 1111 1111 1111", [("credit_card", "4111 1111 1111 1111")]),
        ("4111-1111-1111-1111", [("credit_card", "4111-1111-1111-1111")]),
        ("4111111111111111", [("credit_card", "4111111111111111")]),
        ("amex 3782 822463 10005", [("credit_card", "3782 822463 10005")]),
        ("card 4111 1111 1111 1111 exp 2027", [("credit_card", "4111 1111 1111 1111")]),
        ("card 4111 1111 1111 1111 2027", [("credit_card", "4111 1111 1111 1111")]),
        ("from 192.168.1.10.", [("ip_address", "192.168.1.10")]),
        (
            "0.0.0.0 and 255.255.255.255",
            [("ip_address", "0.0.0.0"), ("ip_address", "255.255.255.255")],
        ),
        ("2001:db8::8a2e:370:7334", [("ip_address", "2001:db8::8a2e:370:7334")]),
        ("2001:db8::192.0.2.1 x", [("ip_address", "2001:db8::192.0.2.1")]),
        ("::ffff:192.0.2.1", [("ip_address", "192.0.2.1")]),
        (
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            [("ip_address", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")],
        ),
        ("DE89 3704 0044 0532 0130 00", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("GB82WEST12345698765432 ok", [("iban", "GB82WEST12345698765432")]),
        ("gb82 west 1234 5698 7654 32", [("iban", "gb82 west 1234 5698 7654 32")]),
    ],
)
def test_detects(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected
    assert contains_pii(text)
    assert pii_types(text) == sorted({t for t, _ in expected})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Plain prose without anything personal in it, just words.",
        "4111 1111 1111 1112",  # fails Luhn
        "1234567890123456",  # 16 digits, fails Luhn
        "1111111111111117",  # Luhn-valid but no card issuer starts with 1
        "order 4111111111111111111111",  # too long to be a card
        "000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000",  # impossible SSNs
        "1-123-45-6789-0",  # part of a longer number
        "123456789",  # a bare 9-digit number is not called an SSN
        "256.1.1.1 1.2.3.4.5 01.02.03.04",  # bad octets, a version, leading zeros
        "v1.2.3.4",
        "std::vector a[1::2] 10:30:00 ::1 fe80::1",
        "00:1A:2B:3C:4D:5E",  # a MAC address
        "GB82WEST12345698765433",  # bad IBAN checksum
        "XX82WEST12345698765432",  # no such country
        "GB82WEST1234569876543",  # wrong length for GB
        "2024-01-15 and 15.01.2024 and 01/15/2024",  # dates
        "2024-01-15 10 30 45",  # a date followed by numbers
        "1700000000",  # epoch seconds
        "5551234567",  # a bare 10-digit number
        "years 2019 2020 2021 2022",
        "values 100 200 300 400 500",
        "pi 3.14159 2.71828 1.41421",
        "+1 2 3 4 5 6 7 8",
        "tel 555-1234",  # too short
        "0044 20-7946 0958",  # mixed separators after 00
        "00 0123 4567",  # no country code starts with 0
        "x@y",
        "user@localhost",
    ],
)
def test_does_not_flag(text: str) -> None:
    assert found(text) == []
    assert not contains_pii(text)
    assert pii_types(text) == []


def test_none_and_empty() -> None:
    assert find_pii(None) == []
    assert pii_types(None) == []
    assert not contains_pii(None)
    assert not contains_pii("")


def test_offsets_are_character_offsets() -> None:
    text = "héllo 🙂 mail: jöhn@x.org? card 4111111111111111 ü"
    matches = find_pii(text)
    assert [(m.type, text[m.start : m.end]) for m in matches] == [
        ("email", "jöhn@x.org"),
        ("credit_card", "4111111111111111"),
    ]


def test_lone_surrogates_do_not_raise() -> None:
    text = "\ud800 john@x.org \udfff"
    assert found(text) == [("email", "john@x.org")]


def test_overlaps_go_to_the_stronger_type() -> None:
    # The digits of an IBAN contain a phone-shaped "0044 0532 0130 00".
    assert found("DE89 3704 0044 0532 0130 00") == [("iban", "DE89 3704 0044 0532 0130 00")]
    assert find_pii("DE89 3704 0044 0532 0130 00", types={"phone"}) == []


def test_types_filter_and_sorted_dedup() -> None:
    text = "b@x.org 192.168.0.1 a@x.org 4111111111111111"
    assert pii_types(text) == ["credit_card", "email", "ip_address"]
    assert [m.type for m in find_pii(text, types={"email"})] == ["email", "email"]
    assert find_pii(text)[0] == PiiMatch(type="email", start=0, end=7)


def test_many_items_in_a_long_text() -> None:
    text = " ".join(f"user{i}@example.com 10.0.{i % 250}.{i % 200}" for i in range(300))
    matches = find_pii(text)
    assert len(matches) == 600
    assert all(a.end <= b.start for a, b in itertools.pairwise(matches))


def test_a_long_digit_run_is_not_pii() -> None:
    assert not contains_pii("9" * 10_000)
    assert find_pii("1 " * 5_000) == []


def test_import_does_not_load_re2() -> None:
    code = (
        "import sys, policy_core.primitives, policy_core.primitives.pii; "
        "assert 're2' not in sys.modules, 're2 imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def luhn_check_digit(payload: str) -> str:
    for d in "0123456789":
        if luhn_valid(payload + d):
            return d
    raise AssertionError("no Luhn digit")


def test_luhn_valid() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("4111-1111")
    assert luhn_valid(b"0")


@given(st.from_regex(r"[2-6][0-9]{11,17}", fullmatch=True))
def test_luhn_property_cards(payload: str) -> None:
    """Exactly one check digit makes a payload Luhn-valid, and only it is a card."""
    check = luhn_check_digit(payload)
    assert sum(luhn_valid(payload + d) for d in "0123456789") == 1
    number = payload + check
    assert pii_types(f"card {number} end") == ["credit_card"]
    wrong = payload + str((int(check) + 1) % 10)
    assert "credit_card" not in pii_types(f"card {wrong} end")


@given(st.from_regex(r"[0-9]{1,20}", fullmatch=True), st.integers(min_value=0, max_value=19))
def test_luhn_detects_every_single_digit_error(digits: str, position: int) -> None:
    if not luhn_valid(digits):
        digits = digits + luhn_check_digit(digits)
    i = position % len(digits)
    for d in "0123456789":
        if d != digits[i]:
            assert not luhn_valid(digits[:i] + d + digits[i + 1 :])


@given(st.text(max_size=200))
def test_never_raises_and_agrees_with_itself(text: str) -> None:
    matches = find_pii(text)
    assert contains_pii(text) == bool(matches)
    assert pii_types(text) == sorted({m.type for m in matches})
    for m in matches:
        assert m.type in PII_TYPES
        assert 0 <= m.start < m.end <= len(text)


_pii_piece = st.sampled_from(
    ["john@x.org", "+44 20 7946 0958", "123-45-6789", "4111 1111 1111 1111", "10.1.2.3"]
)


@given(st.lists(st.one_of(_pii_piece, st.sampled_from([" ", " and ", ", ", "\n"])), max_size=12))
def test_embedded_items_are_found_in_order(parts: list[str]) -> None:
    text = " ".join(parts)
    assert contains_pii(text) == any(p.strip(" ,\nand") for p in parts)
