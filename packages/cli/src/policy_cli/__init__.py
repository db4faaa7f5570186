"""The llm-policy admin CLI and composition roots."""

__all__: list[str] = []
