from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from policy_core.paths import PathSegment, format_path, get_path, parse_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user", ("user",)),
        ("user.id", ("user", "id")),
        ("request.tags[0]", ("request", "tags", 0)),
        ("metadata['x-key']", ("metadata", "x-key")),
        ('metadata["x-key"]', ("metadata", "x-key")),
        ("a.b[0]['x-y'][\"k\"]", ("a", "b", 0, "x-y", "k")),
        ("a[-1]", ("a", -1)),
        ("_a1.B_2", ("_a1", "B_2")),
        (r"m['it\'s']", ("m", "it's")),
        (r"m['a\nb\tc\\d']", ("m", "a\nb\tc\\d")),
        (r"m['\u00e9']", ("m", "é")),
        (r"m['\d+']", ("m", r"\d+")),  # unknown escapes are kept as written
        ("m['']", ("m", "")),
        ("m['a.b[0]']", ("m", "a.b[0]")),
    ],
)
def test_parse_path(text: str, expected: tuple[PathSegment, ...]) -> None:
    assert parse_path(text) == expected


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("1abc", 0),
        ("a.", 2),
        ("a..b", 2),
        ("a[", 2),
        ("a[]", 2),
        ("a[0", 3),
        ("a['x'", 5),
        ("a['x", 4),
        ("a b", 1),
        ("a[-]", 3),
        ("a.b-c", 3),
        ("[0]", 0),
        (r"a['\u12']", 3),
    ],
)
def test_parse_path_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(ValueError, match=rf"at position {position}\b"):
        parse_path(text)


CTX: dict[str, Any] = {
    "user": {"id": "u1", "roles": ["admin", "dev"], "nothing": None},
    "request": {"tags": ["a", "b"]},
    "metadata": {"x-key": 7, "0": "zero"},
    "text": "hello",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("user.id", "u1"),
        ("user.roles[1]", "dev"),
        ("request.tags[0]", "a"),
        ("metadata['x-key']", 7),
        ("metadata['0']", "zero"),
        ("user", CTX["user"]),
        ("missing", None),
        ("user.missing.deeper", None),
        ("user.nothing", None),
        ("user.nothing.x", None),
        ("user.id.x", None),  # .k on a string
        ("user.roles.x", None),  # .k on a list
        ("user.roles['0']", None),  # a quoted key on a list
        ("text[0]", None),  # [i] on a string
        ("metadata[0]", None),  # [i] on a map
        ("request.tags[2]", None),  # out of range
        ("request.tags[-1]", None),  # negative
    ],
)
def test_get_path(path: str, expected: Any) -> None:
    assert get_path(CTX, parse_path(path)) == expected


def test_get_path_rejects_bool_and_foreign_segments() -> None:
    assert get_path({"l": [1, 2]}, ("l", True)) is None
    assert get_path({"l": [1, 2]}, ("l", 1.0)) is None  # type: ignore[arg-type]
    assert get_path({"t": (1, 2)}, ("t", 0)) is None  # tuples are not JSON lists
    assert get_path(None, ("a",)) is None
    assert get_path({"a": 1}, ()) == {"a": 1}


def test_format_path() -> None:
    assert format_path(("a", "b", 0, "x-y", "it's")) == "a.b[0]['x-y']['it\\'s']"
    with pytest.raises(ValueError, match="start with an index"):
        format_path((0,))
    with pytest.raises(ValueError, match="start with a name"):
        format_path(("x-y",))
    with pytest.raises(ValueError, match="at least one"):
        format_path(())


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_keys = st.text(max_size=10)
_segments = st.lists(st.one_of(_keys, st.integers(min_value=-(10**6), max_value=10**6)), max_size=6)


@given(root=_names, rest=_segments)
def test_parse_path_round_trips_formatted_paths(root: str, rest: list[PathSegment]) -> None:
    segments = (root, *rest)
    assert parse_path(format_path(segments)) == segments


@given(text=st.text(max_size=20))
def test_parse_path_raises_only_value_error(text: str) -> None:
    message = ""
    segments: tuple[PathSegment, ...] = ()
    try:
        segments = parse_path(text)
    except ValueError as exc:
        message = str(exc)
    if message:
        assert "at position" in message
    else:
        assert segments
        assert isinstance(segments[0], str)
