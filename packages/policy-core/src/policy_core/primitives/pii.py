"""Linear-time PII detection: email, phone, ssn, credit_card, ip_address, iban.

Each type is a bounded RE2 candidate pattern plus a check in Python (Luhn,
mod-97, octet ranges, phone shapes, word boundaries). RE2 runs over the UTF-8
bytes of the text (the patterns are ASCII, so Latin-1 mode is exact and
cheaper); an `re2.Set` of all candidates tells in one pass which types can
occur at all, so text without PII costs one scan. Nothing is compiled, and
`re2` is not even imported, until the first call.

Where candidates of several types overlap, the stronger type keeps the span:
email, iban, credit_card, ssn, ip_address, phone (a card number is not also a
phone). docs/primitives.md states the rules of each type.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any, NamedTuple

import msgspec

__all__ = ["PII_TYPES", "PiiMatch", "contains_pii", "find_pii", "luhn_valid", "pii_types"]

PII_TYPES: tuple[str, ...] = ("credit_card", "email", "iban", "ip_address", "phone", "ssn")


class PiiMatch(msgspec.Struct, frozen=True, kw_only=True):
    """One detected item: its type and its `str` (character) offsets in the text."""

    type: str
    start: int
    end: int


_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGIT = frozenset(b"0123456789")
_HEXC = frozenset(b"0123456789ABCDEFabcdef:")

Span = tuple[int, int]


def _alnum_at(data: bytes, i: int) -> bool:
    return 0 <= i < len(data) and data[i] in _ALNUM


def _isolated(data: bytes, start: int, end: int) -> bool:
    """No letter or digit glued to either side of `data[start:end]`."""
    return not _alnum_at(data, start - 1) and not _alnum_at(data, end)


def luhn_valid(digits: str | bytes) -> bool:
    """The Luhn checksum of a string of ASCII digits (False for anything else)."""
    raw = digits.encode("ascii", "replace") if isinstance(digits, str) else digits
    if not raw or any(b not in _DIGIT for b in raw):
        return False
    total = 0
    for i, b in enumerate(reversed(raw)):
        d = b - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# A trivial pattern on short candidates: the stdlib engine is linear here and
# cheaper per call than RE2 for a handful of bytes.
_DIGIT_RUN = re.compile(rb"\d+", re.ASCII)


def _groups(text: bytes) -> list[tuple[int, int]]:
    """(start, end) of each digit run in `text` (a short candidate)."""
    return [m.span() for m in _DIGIT_RUN.finditer(text)]


# --- email -----------------------------------------------------------------
# RFC 5321: a path is at most 256 octets with its angle brackets, so an address
# is at most 254. The bound also makes every detector's span bounded (MAX_SPAN).
MAX_EMAIL = 254
_EMAIL = (
    rb"[A-Za-z0-9._%+\-\x80-\xff]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    rb"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}"
)


def _email(data: bytes, start: int, end: int) -> Span | None:
    while data[start] == 0x2E:  # a local part cannot start with a dot
        start += 1
    at = data.index(b"@", start)
    if at == start or at - start > 255 or end - start > MAX_EMAIL:
        return None
    if _alnum_at(data, end) or (end < len(data) and data[end] in b"_-"):
        return None
    return start, end


# --- credit card -----------------------------------------------------------
_CARD = rb"\d(?:[ \-]?\d){12,18}"


def _card(data: bytes, start: int, end: int) -> Span | None:
    """13-19 digits, Luhn-valid, issuer digit 2-6, in groups of 3-6 if separated.

    A greedy candidate may run into a following number, so shorter prefixes
    made of whole groups are tried too.
    """
    chunk = data[start:end]
    seps = {b for b in chunk if b not in _DIGIT}
    if len(seps) > 1:
        return None
    groups = _groups(chunk)
    if len(groups) > 1 and any(not 3 <= e - s <= 6 for s, e in groups[:-1]):
        return None
    for n in range(len(groups), 0, -1):
        stop = groups[n - 1][1]
        if not 3 <= groups[n - 1][1] - groups[n - 1][0] <= 6 and n > 1:
            continue
        digits = chunk[:stop].replace(b" ", b"").replace(b"-", b"")
        if (
            13 <= len(digits) <= 19
            and 0x32 <= digits[0] <= 0x36
            and _isolated(data, start, start + stop)
            and luhn_valid(digits)
        ):
            return start, start + stop
    return None


# --- ssn -------------------------------------------------------------------
_SSN = rb"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}"


def _ssn(data: bytes, start: int, end: int) -> Span | None:
    area, group, serial = data[start : start + 3], data[start + 4 : start + 6], data[end - 4 : end]
    if area in (b"000", b"666") or area[0] == 0x39 or group == b"00" or serial == b"0000":
        return None
    if not _isolated(data, start, end) or (start > 0 and data[start - 1] == 0x2D):
        return None
    if end + 1 < len(data) and data[end] == 0x2D and data[end + 1] in _DIGIT:
        return None
    return start, end


# --- ip address --------------------------------------------------------------
_IPV4 = rb"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
# The dotted tail comes first: leftmost-first alternation would otherwise stop
# "2001:db8::192.0.2.1" at "192".
_IPV6 = rb"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"


def _ipv4(data: bytes, start: int, end: int) -> Span | None:
    for octet in data[start:end].split(b"."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == 0x30):
            return None
    if not _isolated(data, start, end) or (start > 0 and data[start - 1] == 0x2E):
        return None
    if end + 1 < len(data) and data[end] == 0x2E and data[end + 1] in _DIGIT:
        return None  # a version number such as 1.2.3.4.5
    return start, end


def _ipv6(data: bytes, start: int, end: int) -> Span | None:
    import ipaddress  # only for texts that contain an IPv6-shaped candidate

    chunk = data[start:end]
    if sum(1 for part in chunk.split(b":") if part) < 3:
        return None  # "a::b", slices like [1::2], "::1": too ambiguous to call PII
    if (start > 0 and (data[start - 1] in _HEXC or data[start - 1] == 0x2E)) or (
        end < len(data) and (data[end] in _HEXC or data[end] in _ALNUM)
    ):
        return None
    try:
        ipaddress.IPv6Address(chunk.decode("ascii"))
    except ValueError:
        return None
    return start, end


# --- iban --------------------------------------------------------------------
_IBAN = rb"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}"
# Total IBAN length per country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban(data: bytes, start: int, end: int) -> Span | None:
    """The country's exact length, check digits 02-98, and mod-97 == 1."""
    length = _IBAN_LENGTHS.get(data[start : start + 2].decode("ascii").upper())
    if length is None or _alnum_at(data, start - 1):
        return None
    chars: list[str] = []
    stop = start
    for i in range(start, end):
        if data[i] != 0x20:
            chars.append(chr(data[i]).upper())
            if len(chars) == length:
                stop = i + 1
                break
    if len(chars) < length or _alnum_at(data, stop) or not 2 <= int("".join(chars[2:4])) <= 98:
        return None
    rearranged = "".join(chars[4:] + chars[:4])
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return (start, stop) if int(numeric) % 97 == 1 else None


# --- phone -------------------------------------------------------------------
_PHONE = rb"\+?\(?\d[\d \-.()]{5,24}\d"
_PHONE_SEPS = frozenset({b" ", b"-", b".", b"(", b")", b" (", b") ", b")-"})


def _date_like(groups: list[bytes]) -> bool:
    if len(groups) < 3:
        return False
    a, b, c = groups[0], groups[1], groups[2]
    if len(a) == 4 and len(b) == 2 and len(c) == 2:  # 2024-01-15
        return a[:2] in (b"19", b"20") and 1 <= int(b) <= 12 and 1 <= int(c) <= 31
    if len(a) == 2 and len(b) == 2 and len(c) == 4:  # 15.01.2024, 01-15-2024
        return c[:2] in (b"19", b"20") and min(int(a), int(b)) <= 12 and int(a) <= 31
    return False


def _international(plus: bool, groups: list[bytes], seps: list[bytes]) -> bool:
    """+CC or 00CC, 8-15 digits; a real country code (1-3 digits, not 0)."""
    if plus:
        country = groups[0] if len(groups) > 1 else b"1"
        digits = sum(map(len, groups))
    else:
        country = groups[0][2:] or groups[1]
        digits = sum(map(len, groups)) - 2
        if len(set(seps)) > 1:
            return False
    if not 1 <= len(country) <= 3 or country[0] == 0x30:
        return False
    # After the country and area codes, groups have 2+ digits (a "(0)" trunk
    # digit aside), so "+1 2 3 4 5 6 7 8" is no phone.
    rest = all(len(g) <= 8 for g in groups[1:])
    rest = rest and all(len(g) >= 2 or g == b"0" for g in groups[2:])
    return 8 <= digits <= 15 and rest


def _phone_shape(plus: bool, groups: list[bytes], seps: list[bytes]) -> bool:
    if plus or (groups[0].startswith(b"00") and len(groups) > 1):
        return _international(plus, groups, seps)
    if _date_like(groups):
        return False
    nanp = groups[1:] if len(groups) == 4 and groups[0] == b"1" else groups
    if [len(g) for g in nanp] == [3, 3, 4] and nanp[0][0] >= 0x32:
        return True  # North American: (NXX) NXX-XXXX, optionally after a 1
    # Elsewhere a national number starts with the trunk prefix 0 and an area
    # code (0 then 1-9), written with one kind of separator.
    return (
        groups[0][:1] == b"0"
        and groups[0][1:2] not in (b"", b"0")
        and len(set(seps)) <= 1
        and 10 <= sum(map(len, groups)) <= 11
        and 2 <= len(groups) <= 5
        and all(2 <= len(g) <= 8 for g in groups)
    )


def _phone(data: bytes, start: int, end: int) -> Span | None:
    """A '+'/'00' international number (8-15 digits) or a national one.

    National numbers are North American (3-3-4 digits, area code 2-9,
    optionally after a 1) or start with the trunk prefix 0 and an area code
    (10-11 digits in 2-5 groups, one kind of separator), so plain numbers,
    years and dates are not phones. The longest
    prefix of whole groups that has a phone shape wins.
    """
    chunk = data[start:end]
    plus = chunk[0] == 0x2B
    spans = _groups(chunk)
    groups = [chunk[s:e] for s, e in spans]
    lead = chunk[: spans[0][0]]
    seps: list[bytes] = []
    for k in range(1, len(spans)):
        sep = chunk[spans[k - 1][1] : spans[k][0]]
        if sep not in _PHONE_SEPS:
            break
        seps.append(sep)
    for n in range(len(seps) + 1, 0, -1):
        used = seps[: n - 1]
        opens = lead.count(b"(") + sum(sep.count(b"(") for sep in used)
        closes = sum(sep.count(b")") for sep in used)
        if opens != closes or opens > 1 or not _phone_shape(plus, groups[:n], used):
            continue
        stop = start + spans[n - 1][1]
        if _isolated(data, start, stop):
            return start, stop
    return None


#: The longest span any detector reports, in bytes (so in characters too): the
#: e-mail bound; IBAN 64, IPv6 50, card 37, phone 28, IPv4 15, SSN 11.
MAX_SPAN = MAX_EMAIL


class _Detector(NamedTuple):
    type: str
    pattern: bytes
    check: Callable[[bytes, int, int], Span | None]


# Strongest first: this order settles overlapping candidates.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector("email", _EMAIL, _email),
    _Detector("iban", _IBAN, _iban),
    _Detector("credit_card", _CARD, _card),
    _Detector("ssn", _SSN, _ssn),
    _Detector("ip_address", _IPV6, _ipv6),  # before IPv4: it may end in one
    _Detector("ip_address", _IPV4, _ipv4),
    _Detector("phone", _PHONE, _phone),
)


class _Engine(NamedTuple):
    prefilter: Any  # re2.Set over every candidate pattern
    regexes: tuple[Any, ...]


@functools.cache
def _engine() -> _Engine:
    import re2  # deferred: importing this module must stay cheap

    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    prefilter = re2.Set.SearchSet(options)
    for det in _DETECTORS:
        prefilter.Add(det.pattern)
    prefilter.Compile()
    return _Engine(prefilter, tuple(re2.compile(d.pattern, options) for d in _DETECTORS))


def _next_start(data: bytes, start: int, end: int) -> int:
    """Where to look again after a rejected candidate: its next word, else its end."""
    for i in range(start + 1, end):
        if data[i] in _ALNUM and data[i - 1] not in _ALNUM:
            return i
    return end


def _scan(data: bytes, index: int, regex: Any) -> Iterator[Span]:
    check = _DETECTORS[index].check
    pos = 0
    while (m := regex.search(data, pos)) is not None:
        start, end = m.span()
        span = check(data, start, end)
        if span is not None:
            yield span
            pos = span[1]
        else:
            pos = _next_start(data, start, end)


def _candidates(data: bytes) -> list[int]:
    engine = _engine()
    hits = engine.prefilter.Match(data)
    return sorted(hits) if hits else []


def _char_offsets(text: str, data: bytes, offsets: list[int]) -> dict[int, int]:
    """Map byte offsets (all at ASCII bytes) to `str` offsets in one pass."""
    result: dict[int, int] = {}
    byte_pos = char_pos = 0
    for off in sorted(set(offsets)):
        char_pos += len(data[byte_pos:off].decode("utf-8", "surrogatepass"))
        byte_pos = off
        result[off] = char_pos
    return result


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def find_pii(text: str | None, types: Collection[str] | None = None) -> list[PiiMatch]:
    """Every PII item in `text`, in order, with `str` offsets; [] for None.

    Overlapping candidates are settled first (the stronger type keeps the
    span); `types`, when given, then keeps only those types.
    """
    if not text:
        return []
    data = _encode(text)
    engine = _engine()
    # Non-overlapping spans, kept sorted; stronger detectors claim theirs first.
    accepted: list[tuple[int, int, str]] = []
    for index in _candidates(data):
        kind = _DETECTORS[index].type
        for start, end in _scan(data, index, engine.regexes[index]):
            at = bisect.bisect_left(accepted, (start,))
            if (at > 0 and accepted[at - 1][1] > start) or (
                at < len(accepted) and accepted[at][0] < end
            ):
                continue
            accepted.insert(at, (start, end, kind))
    if types is not None:
        accepted = [a for a in accepted if a[2] in types]
    if len(data) != len(text):
        conv = _char_offsets(text, data, [o for a in accepted for o in a[:2]])
        accepted = [(conv[s], conv[e], t) for s, e, t in accepted]
    return [PiiMatch(type=t, start=s, end=e) for s, e, t in accepted]


def pii_types(text: str | None) -> list[str]:
    """Sorted, de-duplicated PII types found in `text` ([] for None)."""
    return sorted({m.type for m in find_pii(text)})


def contains_pii(text: str | None) -> bool:
    """True as soon as one PII item is confirmed (False for None)."""
    if not text:
        return False
    data = _encode(text)
    engine = _engine()
    for index in _candidates(data):
        for _ in _scan(data, index, engine.regexes[index]):
            return True
    return False
