"""Standard security headers on every response, the fast path's and Litestar's alike.

An API answers JSON, so nothing it sends should be sniffed as another type,
framed or allowed to load anything; the reference page (the only HTML) gets
a CSP of its own that allows only its same-origin stylesheet. The server
announces no name or version (uvicorn is told not to send its `server` header; any that
an inner layer adds is dropped).
"""

from __future__ import annotations

from litestar.types import Message, Send

from policy_http._docs_page import DOCS_CSP

__all__ = ["SECURITY_HEADERS", "with_security_headers"]

_API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_DROPPED = frozenset({b"server", b"x-powered-by"})


def with_security_headers(send: Send) -> Send:
    """`send`, adding the security headers to the response start."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[tuple[bytes, bytes]] = [
                (k, v) for k, v in message.get("headers", ()) if k.lower() not in _DROPPED
            ]
            html = any(
                k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers
            )
            headers.extend(SECURITY_HEADERS)
            headers.append((b"content-security-policy", DOCS_CSP.encode() if html else _API_CSP))
            message["headers"] = headers
        await send(message)

    return secured
