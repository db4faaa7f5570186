"""The policy language, compiler and decision engine (pure, no I/O)."""

__all__: list[str] = []
