"""The loader's fast path (language/fast_source.py) against its slow definition.

The loader first reads a text with libyaml and plain values; only a text with
something to report goes through ruamel's position-keeping round-trip loader.
These tests pin the two together: on every policy text of the repository, the
language cases (bad documents included), the loader fuzz corpus, hand-written
YAML corner cases and seeded mutations of all of them,

- the fast parse either declines or yields exactly the slow parse's documents,
  as plain values of the same types;
- load_policy_text gives the same policies, or the same PolicyLoadError issues
  (messages and positions), with and without the fast path;
- validate_policy_text gives the same warnings (with a context schema and an
  empty integration set, so that every kind of warning can occur).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from policy_core.errors import PolicyLoadError
from policy_core.language import ContextSchema, load_policies, load_policy_text
from policy_core.language.fast_source import plain_documents
from policy_core.language.loader import validate_policy_text
from policy_core.language.source import SourceText, parse_documents, to_plain, unwrap
from policy_core.testing.cases import load_case_files

ROOT = Path(__file__).resolve().parents[3]

_CORNERS = [
    # YAML 1.2 scalars the round-trip loader resolves: the fast path must agree or decline
    "a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\n",
    "a: 012\nb: 0o12\nc: 0x1F\nd: 1_000\ne: +5\nf: -0\ng: 0\n",
    "a: 1e3\nb: .5\nc: 1.\nd: .inf\ne: -.inf\nf: .nan\ng: 1.50\nh: -2.25\ni: +0.5\n",
    "a: 2024-01-01\nb: 2024-01-01 10:00:00\nc: 2024-01-01T10:00:00Z\n",
    "a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: ''\ng: 'null'\n",
    "a: true\nb: True\nc: TRUE\nd: tRue\ne: false\nf: False\ng: FALSE\n",
    "a: &x 1\nb: *x\n",
    "base: &b {k: v}\nother:\n  <<: *b\n  j: w\n",
    "a: !!str 1\nb: !custom x\n",
    "%YAML 1.1\n---\na: yes\n",
    "%TAG !e! tag:example.com,2000:\n---\na: 1\n",
    "a: 1\na: 2\n",
    "? [a, b]\n: c\n",
    "1: a\ntrue: b\nnull: c\n",
    "a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\n\n  para\nc: |-\n  strip\nd: |+\n  keep\n\n",
    "a: \"tab\\tnew\\nline \\u00e9 \\x41 \\/ \\N \\_ \\L\"\nb: 'it''s'\n",
    "a: plain\n  continued\n  lines\nb: 'single\n  folded'\n",
    "a: b # comment\n# full line\nc: [1, 2, # inner\n  3]\n",
    "a:\tb\n",
    "\ufeffa: 1\n",
    "a: 1\r\nb: 2\r\n",
    "- metadata: {id: a}\n  rules: []\n- metadata: {id: b}\n  rules: []\n",
    "---\nmetadata: {id: a}\nrules: []\n---\n---\nmetadata: {id: b}\nrules: []\n...\n",
    '[{"metadata": {"id": "j"}, "rules": []}, 3]',
    '{"metadata": {"id": "j", "priority": 1.0}, "rules": [], "version": 1}',
    "metadata: {id: a}\nrules: []\nmetadata: {id: b}\n",
    "a: [" * 120 + "]" * 120,
    "a:\n" + "".join("  " * i + "- \n" for i in range(1, 110)),
    "x: '\ud800'\n" if False else 'x: "\\ud800"\n',
    "a: 'unterminated\n",
    "a: [1, 2\n",
    "\x00\x01: bad\n",
    "",
    "# only a comment\n",
    "---\n...\n",
    "just a scalar\n",
    "- 1\n- two\n",
]


def _texts() -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for pattern in ("examples/policies/*.yaml", "bench/*.yaml", "docs/**/*.yaml"):
        for path in sorted(ROOT.glob(pattern)):
            texts.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    for doc in sorted(ROOT.glob("docs/*.md")):
        for index, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S)):
            texts.append((f"{doc.name}#{index}", block))
    for case in load_case_files(ROOT / "tests" / "cases"):
        if case.policies:
            texts.append((case.id, case.policies))
    for path in sorted((ROOT / "reliability" / "corpus" / "loader").iterdir()):
        texts.append((f"corpus/{path.name}", path.read_bytes().decode("utf-8", "replace")))
    texts += [(f"corner{i}", text) for i, text in enumerate(_CORNERS)]
    return texts


def _mutations(texts: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """Seeded small edits of the policy texts: deleted or swapped lines, changed characters."""
    rng = random.Random(16)
    policies = [t for t in texts if "metadata" in t[1]]
    out: list[tuple[str, str]] = []
    alphabet = [*" :-'\"[]{},#&*!|>\n\t0123456789abcxyz.\\", "  ", ": ", "- "]
    for n in range(count):
        name, text = rng.choice(policies)
        lines = text.split("\n")
        op = rng.randrange(4)
        i = rng.randrange(len(lines))
        if op == 0:
            del lines[i]
        elif op == 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            line = lines[i]
            k = rng.randrange(len(line) + 1)
            cut = k + (1 if op == 2 else 0)
            lines[i] = line[:k] + rng.choice(alphabet) + line[cut:]
        out.append((f"{name}~{n}", "\n".join(lines)))
    return out


TEXTS = _texts()
ALL = TEXTS + _mutations(TEXTS, 400)


def _strict(value: Any) -> bytes:
    """Plain values compared with their types (True is not 1, 1.0 is not 1)."""
    return msgspec.json.encode(value)


def _outcome(text: str, name: str, fast: bool) -> Any:
    try:
        return ("ok", load_policy_text(text, file=name, fast=fast))
    except PolicyLoadError as exc:
        return ("error", list(exc.issues))


def test_the_corpus_is_broad() -> None:
    declined = sum(plain_documents(text) is None for _, text in ALL)
    accepted = len(ALL) - declined
    assert len(TEXTS) > 300
    assert accepted > 200, (accepted, declined)
    assert declined > 50, (accepted, declined)


@pytest.mark.parametrize(("name", "text"), ALL, ids=[n for n, _ in ALL])
def test_fast_parse_declines_or_equals_the_round_trip_parse(name: str, text: str) -> None:
    fast = plain_documents(text)
    if fast is None:
        return
    slow, problems = parse_documents(SourceText(text, name))
    assert problems == []
    assert _strict(fast) == _strict([to_plain(unwrap(d)[0]) for d in slow])


@pytest.mark.parametrize(("name", "text"), ALL, ids=[n for n, _ in ALL])
def test_loader_gives_the_same_result_with_and_without_the_fast_path(name: str, text: str) -> None:
    assert _outcome(text, name, fast=True) == _outcome(text, name, fast=False)


_SCHEMA = ContextSchema(
    {"type": "object", "properties": {"llm": {"type": "object", "properties": {"model": {}}}}}
)


@pytest.mark.parametrize(("name", "text"), ALL, ids=[n for n, _ in ALL])
def test_validation_gives_the_same_warnings_with_and_without_the_fast_path(
    name: str, text: str
) -> None:
    def report(fast: bool) -> Any:
        try:
            result = validate_policy_text(
                text, file=name, context_schema=_SCHEMA, integrations=(), fast=fast
            )
        except PolicyLoadError as exc:
            return ("error", list(exc.issues))
        return ("ok", result.policies, result.warnings)

    assert report(True) == report(False)


def test_a_duplicate_id_across_files_names_the_line_of_the_fast_loaded_first(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text("# first\n\nmetadata:\n  id: same\nrules: []\n")
    (tmp_path / "b.yaml").write_text("metadata: {id: same}\nrules: []\n")
    for fast in (True, False):
        with pytest.raises(PolicyLoadError) as caught:
            load_policies(tmp_path, fast=fast)
        (issue,) = caught.value.issues
        assert issue.message == f"duplicate policy id 'same' (first defined at {tmp_path}/a.yaml:4)"
        assert (issue.file, issue.line) == (str(tmp_path / "b.yaml"), 1)
