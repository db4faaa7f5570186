"""HTTP clients for Shield, CostOps, Governance and Edge integrations."""

__all__: list[str] = []
