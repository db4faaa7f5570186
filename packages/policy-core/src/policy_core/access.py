"""Who may do what: the roles table of interfaces.md, shared by every API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["ALL_PERMISSIONS", "ROLE_PERMISSIONS", "permissions_for"]

ALL_PERMISSIONS: frozenset[str] = frozenset(
    {
        "policies:read",
        "policies:write",
        "policies:delete",
        "evaluate",
        "history:read",
        "usage:write",
        "apikeys:manage",
    }
)

#: An unknown role grants nothing.
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "admin": ALL_PERMISSIONS,
    "policy-admin": frozenset(
        {"policies:read", "policies:write", "policies:delete", "evaluate", "history:read"}
    ),
    "evaluator": frozenset({"evaluate", "usage:write"}),
    "auditor": frozenset({"policies:read", "history:read"}),
}


def permissions_for(roles: Iterable[str]) -> frozenset[str]:
    """The union of the permissions of `roles`."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)
