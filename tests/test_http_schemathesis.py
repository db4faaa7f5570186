"""schemathesis over /schema/openapi.json: authenticated, >= 1,000 generated requests.

Checks: no 5xx, every status and content type documented, every response
body and header conforms to the schema. The app runs over in-memory
services seeded with one policy so that reads of `p1` can succeed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from policy_cli.testing import http_app, memory_settings
from policy_http.testing import bearer, make_token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 40  # with the coverage phase: about 1,200 requests in all
MINIMUM_CASES = 1_000


# The schema is loaded at import (schemathesis parametrizes from it); the app is
# the one `llm-policy serve` builds, over the memory deployment seeded with one
# policy (p1) so that reads of `p1` can succeed. Its services open at the app's
# startup (schemathesis runs the ASGI lifespan).
APP = http_app(memory_settings(seed_policies=str(Path(__file__).parent / "schemathesis_seed.yaml")))
SCHEMA = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)
HEADERS = bearer(make_token(roles=["admin"], exp_in=24 * 3600))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
CALLS: list[str] = []


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    # Our credentials replace the ones schemathesis generates for the security schemes.
    headers = {**(case.headers or {}), **HEADERS}
    case.call_and_validate(headers=headers, checks=CHECKS)
    CALLS.append(f"{case.method} {case.path}")


def test_enough_cases_ran() -> None:
    # Runs after the generated tests (file order); alone it has nothing to count.
    if not CALLS:
        return
    assert len(CALLS) >= MINIMUM_CASES, f"only {len(CALLS)} generated requests"
    print(f"schemathesis: {len(CALLS)} generated requests")
    assert len(set(CALLS)) >= 17
