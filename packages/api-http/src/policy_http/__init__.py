"""Litestar HTTP API for the policy engine."""

__all__: list[str] = []
