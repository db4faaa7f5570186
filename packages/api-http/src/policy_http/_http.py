"""Small HTTP helpers: content types, content negotiation, ETags and OpenAPI response specs."""

from __future__ import annotations

import io
import re
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from policy_core.errors import PolicyLoadError
from policy_core.language import MAX_DOCUMENT_DEPTH
from policy_core.ports import PolicyRecord

from policy_http._problems import PROBLEM_MEDIA_TYPE, ApiProblem, Problem, ProblemIssue

__all__ = [
    "YAML_TYPES",
    "etag",
    "expected_revisions",
    "is_syntax_error",
    "policy_text",
    "problems",
    "wants_yaml",
    "yaml_text",
]

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
JSON_TYPES = frozenset({"application/json"})
_ETAG = re.compile(r'^"([A-Za-z0-9][A-Za-z0-9._-]{0,127}):([0-9]{1,18})"$')
_SYNTAX_PREFIXES = ("invalid YAML/JSON", "document is nested too deeply")

_DESCRIPTIONS = {
    400: "Malformed request (JSON/YAML syntax, parameters).",
    401: "Missing or invalid credentials.",
    403: "The caller's roles do not grant the permission.",
    404: "No such resource.",
    409: "A policy with this id already exists.",
    412: "If-Match does not name the current revision.",
    413: "Request body too large.",
    415: "Unsupported Content-Type.",
    422: "Invalid document or request (errors list the problems).",
    428: "If-Match is required.",
    429: "Rate limited; see Retry-After.",
    503: "A backing service is unavailable.",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for these problem statuses (401, 403, 429 and 400 always)."""
    wanted = sorted({400, 401, 403, 429, *statuses})
    return {
        s: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS.get(s, "Error"),
            media_type=PROBLEM_MEDIA_TYPE,
        )
        for s in wanted
    }


def etag(record: PolicyRecord) -> str:
    """A strong ETag naming the id and revision."""
    return f'"{record.id}:{record.revision}"'


def expected_revisions(if_match: str, policy_id: str) -> set[int] | None:
    """Revisions an If-Match header accepts; None for `*` (any current revision).

    A weak tag, a tag of another policy or garbage matches nothing (-> 412).
    """
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    if "*" in tags:
        return None
    out: set[int] = set()
    for tag in tags:
        m = _ETAG.match(tag)
        if m and m.group(1) == policy_id:
            out.add(int(m.group(2)))
    return out


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def policy_text(body: bytes, content_type: str | None) -> str:
    """The policy text of a request body, checking its declared type and syntax (JSON)."""
    kind = media_type(content_type)
    if kind not in YAML_TYPES and kind not in JSON_TYPES:
        raise ApiProblem(
            415,
            "send the policy as application/json or application/yaml "
            "(also application/x-yaml, text/yaml)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem(400, "the body is not UTF-8 text", code="malformed_body") from None
    if not text.strip():
        message = "the body is empty; send a policy document"
        raise ApiProblem(
            400,
            message,
            code="malformed_body",
            errors=[ProblemIssue(line=1, column=1, message=message)],
        )
    if kind in JSON_TYPES:
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise ApiProblem(400, f"malformed JSON: {exc}", code="malformed_body") from None
        except RecursionError:
            detail = f"the document is nested too deeply (at most {MAX_DOCUMENT_DEPTH} levels)"
            raise ApiProblem(400, detail, code="malformed_body") from None
    return text


def is_syntax_error(error: PolicyLoadError) -> bool:
    """A load error that is about YAML/JSON syntax (400), not about the document (422)."""
    return bool(error.issues) and all(i.message.startswith(_SYNTAX_PREFIXES) for i in error.issues)


def wants_yaml(accept: str | None) -> bool:
    """True when Accept prefers a YAML type over JSON (q-values honoured, ties: order)."""
    if not accept or "yaml" not in accept:
        return False
    best: tuple[float, int, bool] | None = None
    for index, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        kind = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if kind in YAML_TYPES or kind in JSON_TYPES or kind in ("*/*", "application/*"):
            candidate = (q, -index, kind in YAML_TYPES)
            if q > 0 and (best is None or candidate[:2] > best[:2]):
                best = candidate
    return bool(best and best[2])


def yaml_text(record: PolicyRecord) -> str:
    """The document as YAML: the submitted text when it was YAML, else a YAML rendering."""
    if not record.text.lstrip().startswith(("{", "[")):
        return record.text
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    yaml.dump(record.document, out)
    return out.getvalue()


def header(scope: Any, name: bytes) -> str | None:
    """One request header from the raw ASGI list (latin-1, as HTTP defines)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
