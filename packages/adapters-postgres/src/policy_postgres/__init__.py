"""PostgreSQL adapters: policy store, decision log, API keys."""

__all__: list[str] = []
