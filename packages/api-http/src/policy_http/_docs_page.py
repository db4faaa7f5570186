"""The API reference page at /schema/swagger (and /schema): self-hosted, no script, no CDN.

Litestar's Swagger UI plugin loads its scripts and styles from a public CDN,
so the page is blank on an offline or locked-down network, and it would need
a CSP allowing that CDN. No PyPI package this project may use ships the
Swagger UI assets, so the server renders the OpenAPI document itself: one
HTML page listing every route (method, path, summary, description,
permission, responses), with links to the JSON and YAML documents, and a
small stylesheet served from the same path prefix. Nothing runs in the
browser, so the page's CSP forbids scripts altogether.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, Router, get
from litestar.openapi.plugins import OpenAPIRenderPlugin

__all__ = ["DOCS_CSP", "ReferencePage"]

DOCS_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_STYLE = b"""\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; }
td, th { border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; vertical-align: top; }
code { font-size: .95em; }
.m { font-weight: bold; text-transform: uppercase; }
"""
_METHODS = ("get", "post", "put", "patch", "delete")


class ReferencePage(OpenAPIRenderPlugin):
    """Renders the OpenAPI document as a static HTML page, its stylesheet next to it."""

    def __init__(self, path: str | list[str] = "/swagger") -> None:
        super().__init__(path=path)

    def receive_router(self, router: Router) -> None:
        @get("/reference.css", media_type="text/css", include_in_schema=False, sync_to_thread=False)
        def stylesheet() -> bytes:
            return _STYLE

        router.register(stylesheet)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        title = escape(str(info.get("title", "API")))
        rows = "".join(_rows(openapi_schema.get("paths", {})))
        # Absolute links: the page answers at /schema and at /schema/swagger alike.
        base = escape(self.get_openapi_json_route(request).rsplit("/", 1)[0])
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title><link rel="stylesheet" href="{base}/reference.css"></head>
<body><h1>{title} <small>{escape(str(info.get("version", "")))}</small></h1>
<p>{escape(str(info.get("description", "")))}</p>
<p>The OpenAPI document: <a href="{base}/openapi.json">openapi.json</a> ·
<a href="{base}/openapi.yaml">openapi.yaml</a> (load it into any OpenAPI tool).</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What</th><th>Responses</th></tr></thead>
<tbody>{rows}</tbody></table></body></html>
"""
        return page.encode()


def _rows(paths: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for path, item in sorted(paths.items()):
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            what = escape(str(op.get("summary") or ""))
            if op.get("description"):
                what += f"<br>{escape(str(op['description']))}"
            codes = ", ".join(escape(str(c)) for c in sorted(op.get("responses", {})))
            out.append(
                f'<tr><td class="m">{method}</td><td><code>{escape(path)}</code></td>'
                f"<td>{what}</td><td>{codes}</td></tr>"
            )
    return out
