"""Redis adapters: L2 decision cache, usage store, change feed."""

__all__: list[str] = []
