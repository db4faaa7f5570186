"""The README and docs/ agree with the program: settings they name exist, links they make resolve."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import msgspec
import pytest
from policy_cli.settings import ENV_PREFIX, Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Names the docs mention on purpose although no setting has them.
NOT_SETTINGS = {
    "LLM_POLICY_DATABSE_URL",  # docs/operations.md shows this typo being refused
}
TEST_PREFIX = "LLM_POLICY_TEST_"  # the test suites' variables, which the settings ignore

_NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9_]+")
# [text](target) links, and ![alt](target) images; not inside `code`.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def settings_names() -> set[str]:
    return {env_name(f.name) for f in msgspec.structs.fields(Settings)}


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_every_setting_the_docs_name_exists(doc: Path) -> None:
    known = settings_names()
    named = set(_NAME.findall(doc.read_text(encoding="utf-8")))
    unknown = {
        n
        for n in named - known - NOT_SETTINGS
        if not n.startswith(TEST_PREFIX) and n != TEST_PREFIX.rstrip("_")
    }
    assert not unknown, f"{_doc_id(doc)} names settings the program does not know: {unknown}"


def test_the_readme_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(rf"^\| `({ENV_PREFIX}[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert rows == settings_names()


def test_the_docs_name_no_foreign_variable_for_a_setting() -> None:
    """The variables the README replaced (docs/http-api.md used to name them)."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for foreign in ("OTEL_EXPORTER_OTLP_ENDPOINT", "PROMETHEUS_MULTIPROC_DIR"):
            assert foreign not in text, f"{_doc_id(doc)} names {foreign}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file."""
    text = _CODE.sub("", path.read_text(encoding="utf-8"))
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def relative_links(doc: Path) -> list[str]:
    text = _CODE.sub("", doc.read_text(encoding="utf-8"))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_docs_make_relative_links() -> None:
    assert sum(len(relative_links(d)) for d in DOCS) > 20


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_every_relative_link_resolves_to_a_file_in_the_repository(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        path_part, _, anchor = target.partition("#")
        resolved = (doc.parent / unquote(path_part)).resolve() if path_part else doc
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{_doc_id(doc)}: " + "; ".join(broken)
