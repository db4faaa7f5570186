"""docs/architecture.md stays true: the ports it lists and the parity tests it names exist.

The fast copies' module docstrings name their parity tests too; those names
are checked the same way, so renaming a parity test fails here until the
docstring and the document follow.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Protocol

from policy_core import ports

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
FAST_COPIES = [
    "packages/policy-core/src/policy_core/compiler/codegen.py",
    "packages/policy-core/src/policy_core/compiler/expr.py",
    "packages/policy-core/src/policy_core/compiler/facts.py",
    "packages/policy-core/src/policy_core/compiler/methods.py",
    "packages/policy-core/src/policy_core/language/fast_source.py",
    "packages/policy-core/src/policy_core/syntax/lexer.py",
    "packages/api-http/src/policy_http/_fastpath.py",
    "packages/api-grpc/src/policy_grpc/_wire.py",
    "packages/api-grpc/src/policy_grpc/_protobuf.py",
    "packages/api-grpc/src/policy_grpc/_transport.py",
    "packages/api-grpc/src/policy_grpc/_response_stream.py",
]
_TEST_FILE = re.compile(r"\b(test_\w+\.py)\b")
_TEST_NAME = re.compile(r"::(test_\w+)")


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def _defined_tests() -> dict[str, set[str]]:
    """Test file name -> the test functions it defines (every test directory)."""
    found: dict[str, set[str]] = {}
    for file in [*ROOT.glob("packages/*/tests/test_*.py"), *ROOT.glob("tests/test_*.py")]:
        tree = ast.parse(file.read_text(encoding="utf-8"))
        names = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        }
        found.setdefault(file.name, set()).update(names)
    return found


def _named(text: str) -> list[tuple[str, str]]:
    """(file, test) for every `file::test` and `::test` (same file as before) in the text."""
    pairs: list[tuple[str, str]] = []
    current = ""
    for match in re.finditer(rf"{_TEST_FILE.pattern}|{_TEST_NAME.pattern}", text):
        if match.group(1):
            current = match.group(1)
        else:
            pairs.append((current, match.group(2)))
    return pairs


def test_every_port_of_ports_py_is_listed_and_nothing_else() -> None:
    protocols = {
        name
        for name, value in vars(ports).items()
        if inspect.isclass(value)
        and Protocol in getattr(value, "__mro__", ())[1:]
        and value.__module__ == ports.__name__
    }
    listed = set(re.findall(r"`(\w+)`", _section("The ports")))
    assert protocols, "no Protocol found in policy_core.ports"
    assert protocols <= listed, f"ports missing from docs/architecture.md: {protocols - listed}"
    not_ports = {n for n in listed if n[:1].isupper()} - protocols - {"SystemClock"}
    assert not not_ports, f"docs/architecture.md lists ports that do not exist: {not_ports}"


def test_the_parity_tests_the_document_names_exist() -> None:
    defined = _defined_tests()
    named = _named(_section("Where the fast paths are"))
    assert len(named) >= 10
    missing = [f"{f}::{t}" for f, t in named if t not in defined.get(f, set())]
    assert not missing, f"docs/architecture.md names tests that do not exist: {missing}"
    for file in re.findall(r"`((?:packages|tests)/[\w/.-]+\.py)`", DOC):
        assert (ROOT / file).exists(), f"docs/architecture.md names a missing file: {file}"


def test_each_fast_copy_names_parity_tests_that_exist() -> None:
    defined = _defined_tests()
    for module in FAST_COPIES:
        docstring = ast.get_docstring(ast.parse((ROOT / module).read_text(encoding="utf-8")))
        assert docstring is not None, module
        named = _named(docstring)
        assert named, f"{module}: its docstring names no parity test"
        missing = [f"{f}::{t}" for f, t in named if t not in defined.get(f, set())]
        assert not missing, f"{module} names tests that do not exist: {missing}"
        assert module.rsplit("/", 1)[1] in DOC, f"docs/architecture.md does not mention {module}"
