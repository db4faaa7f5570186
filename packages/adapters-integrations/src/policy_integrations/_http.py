"""What every integration client shares: one aiohttp session, the base URL, the token, the timeout.

`HttpTransport` is the policy_core.integrations Transport over HTTP: the
bodies it returns are decoded by the core's `decode_answer` (msgspec, into
the typed wire structs), so a wrong-typed body is an `invalid`
IntegrationError saying which field does not fit. The session is created on
first use (inside the running loop) and closed by `close()`, which the
composition root calls on shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

__all__ = ["HttpTransport"]


class HttpTransport:
    """HTTP exchanges with one integration at `base_url` (`Authorization: Bearer <token>`)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 0.2) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "llm-policy"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # A little over the call guard's own timeout: the guard decides and names it.
        self._timeout = aiohttp.ClientTimeout(total=timeout + 0.05)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            )
        return self._session

    async def exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        if body is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        async with self._client().request(
            method, self.base_url + path, data=body, headers=headers
        ) as response:
            return response.status, await response.read()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
