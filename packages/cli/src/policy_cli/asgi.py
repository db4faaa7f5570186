"""The ASGI application factory that `llm-policy serve` hands to the server.

Each worker process calls `create_app_from_env()`: it reads the settings the
parent validated (the parent passes its flags down as LLM_POLICY_* variables)
and builds the app, whose startup opens the deployment's services in the
worker's own event loop and whose shutdown closes them.
"""

from __future__ import annotations

import os
from typing import Any

from policy_cli.settings import load_settings

__all__ = ["create_app_from_env"]


def create_app_from_env() -> Any:
    """The HTTP app over `bootstrap(settings)`, settings from the environment."""
    from policy_http import configure_json_logging, create_app

    from policy_cli.api_settings import http_settings
    from policy_cli.bootstrap import bootstrap

    settings = load_settings(os.environ, serving=True)
    configure_json_logging(settings.log_level)
    return create_app(lambda: bootstrap(settings), http_settings(settings))
