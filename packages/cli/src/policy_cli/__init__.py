"""The llm-policy admin CLI and the composition roots.

- `policy_cli.main:main`: the `llm-policy` command (click).
- `policy_cli.bootstrap.bootstrap(settings)`: the services of a deployment, as
  an async context manager (memory, single node, cluster).
- `policy_cli.settings.load_settings(environ, flags)`: the typed settings.

Names are imported on first use, so `import policy_cli` does no work.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_cli.bootstrap import Services as Services, bootstrap as bootstrap
    from policy_cli.settings import (
        Settings as Settings,
        SettingsError as SettingsError,
        load_settings as load_settings,
    )

_EXPORTS = {
    "Services": "policy_cli.bootstrap",
    "bootstrap": "policy_cli.bootstrap",
    "Settings": "policy_cli.settings",
    "SettingsError": "policy_cli.settings",
    "load_settings": "policy_cli.settings",
}

__all__ = ["Services", "Settings", "SettingsError", "bootstrap", "load_settings"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_cli' has no attribute {name!r}")
    return getattr(import_module(module), name)
