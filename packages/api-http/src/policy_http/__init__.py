"""The HTTP API (Litestar) of the policy engine: `create_app(services, http_settings)`.

Importing this package does no work: nothing reads the environment, opens a
connection or starts a thread until `create_app` is called and the app starts.
"""

from policy_core.access import ALL_PERMISSIONS, ROLE_PERMISSIONS, permissions_for
from policy_core.ports import Principal

from policy_http._problems import CODE_STATUS
from policy_http._runtime import HttpServices, ServicesFactory
from policy_http.app import API_PREFIX, create_app
from policy_http.logs import configure_json_logging
from policy_http.settings import HttpSettings

__all__ = [
    "ALL_PERMISSIONS",
    "API_PREFIX",
    "CODE_STATUS",
    "ROLE_PERMISSIONS",
    "HttpServices",
    "HttpSettings",
    "Principal",
    "ServicesFactory",
    "configure_json_logging",
    "create_app",
    "permissions_for",
]
