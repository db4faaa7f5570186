"""The engine currently in force, swapped atomically when policies change."""

from __future__ import annotations

from policy_core.engine import PolicyEngine

__all__ = ["EngineHolder"]


class EngineHolder:
    """Holds the current `PolicyEngine` in `current`.

    Writers replace `current` in one assignment (atomic under the GIL and on
    one event loop); readers take `holder.current` once per request and use
    that engine throughout, so a request never sees half of a policy change.
    `generation` counts swaps; `loaded` is False until the first load from a store.
    """

    __slots__ = ("current", "generation", "loaded")

    def __init__(self, engine: PolicyEngine | None = None, *, loaded: bool = False) -> None:
        self.current: PolicyEngine = engine if engine is not None else PolicyEngine(())
        self.generation = 0
        self.loaded = loaded or engine is not None

    def swap(self, engine: PolicyEngine) -> None:
        self.current = engine
        self.generation += 1
        self.loaded = True
