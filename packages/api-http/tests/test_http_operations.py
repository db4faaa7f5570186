"""Readiness, metrics, OpenAPI, errors without internals, logs without secrets, rate limits,
API keys."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from loguru import logger
from policy_cli.bootstrap import Services, bootstrap, memory_adapters
from policy_cli.settings import Settings
from policy_cli.testing import http_app, memory_settings
from policy_core.memory import MemoryDecisionLog, SystemClock
from policy_core.ports import DecisionLogCounters
from policy_http import create_app
from policy_http.logs import configure_json_logging
from policy_http.testing import bearer, make_settings, make_token

E = "/api/v1/evaluate"


def build(settings: Settings | None = None, **http: Any) -> tuple[Litestar, dict[str, Services]]:
    """The app over `bootstrap(settings)` (the memory deployment by default); `http` replaces
    HttpSettings fields."""
    holder: dict[str, Services] = {}
    return http_app(settings, started=lambda svc: holder.setdefault("svc", svc), **http), holder


def test_ready_reports_a_failing_check() -> None:
    app, holder = build()
    with TestClient(app) as client:
        assert client.get("/ready").json()["status"] == "ok"

        async def down() -> bool:
            return False

        holder["svc"].checks["store"] = down
        r = client.get("/ready")
        assert r.status_code == 503
        assert r.json() == {
            "status": "unavailable",
            "checks": {"services": False, "rate_limits": True},
        }
        assert client.get("/health").status_code == 200


def test_metrics_expose_requests_decisions_and_the_policy_set(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    seeded.post(E, json={"context": {"llm": {"max_tokens": 5000}}}, headers=admin)
    seeded.post(E, json={"context": {"llm": {"max_tokens": 5000}}}, headers=admin)
    seeded.post(E, json={"context": {}})
    text = seeded.get("/metrics").text
    assert (
        'llm_policy_http_requests_total{method="POST",route="/api/v1/evaluate",status="200"} 2.0'
        in text
    )
    assert (
        'llm_policy_http_requests_total{method="POST",route="/api/v1/evaluate",status="401"} 1.0'
        in text
    )
    assert "llm_policy_http_request_duration_seconds_bucket" in text
    assert 'llm_policy_decisions_total{decision="deny"} 2.0' in text
    assert 'llm_policy_policy_decisions_total{decision="deny",policy="p1"} 2.0' in text
    assert 'llm_policy_decision_cache_total{result="hit"} 1.0' in text
    assert 'llm_policy_decision_cache_total{result="miss"} 1.0' in text
    assert 'llm_policy_policy_set_info{policy_set="sha256:' in text
    assert "llm_policy_policies_loaded 1.0" in text
    assert 'llm_policy_auth_failures_total{status="401"} 1.0' in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.startswith("llm_policy_"), line


def test_openapi_describes_problems_security_and_both_policy_body_types(
    client: TestClient[Litestar],
) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    assert set(schema["components"]["securitySchemes"]) == {"bearerAuth", "apiKey"}
    create = schema["paths"]["/api/v1/policies"]["post"]
    assert set(create["requestBody"]["content"]) >= {"application/json", "application/yaml"}
    assert "application/problem+json" in create["responses"]["422"]["content"]
    evaluate = schema["paths"]["/api/v1/evaluate"]["post"]
    assert set(evaluate["responses"]) >= {"200", "400", "401", "403", "413", "422", "429"}
    assert client.get("/schema/swagger").status_code == 200


def test_unknown_routes_and_methods_are_problems(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = client.get("/api/v1/nothing-here", headers=admin)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["request_id"] == r.headers["x-request-id"]
    r = client.get(E, headers=admin)
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/problem+json")


class Boom(Exception):
    pass


def test_an_internal_error_is_a_bare_500_and_is_logged(
    seeded: TestClient[Litestar], admin: dict[str, str], built: Any
) -> None:
    async def explode(*_: Any, **__: Any) -> Any:
        raise Boom("database password is hunter2")

    built.svc.evaluation.evaluate = explode
    built.svc.policies.list = explode
    stream = io.StringIO()
    handler = configure_json_logging("INFO", stream)
    try:
        for r in (
            seeded.post(E, json={"context": {}}, headers=admin),
            seeded.get("/api/v1/policies", headers=admin),
        ):
            assert r.status_code == 500
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "hunter2" not in r.text
            assert "Boom" not in r.text
            assert "Traceback" not in r.text
            assert r.json()["request_id"] == r.headers["x-request-id"]
    finally:
        logger.remove(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [entry for entry in lines if entry["level"] == "ERROR"]
    assert len(errors) == 2
    assert "Boom" in errors[0]["exception"]
    assert errors[0]["request_id"]


def test_logs_never_hold_tokens_keys_or_prompts(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    stream = io.StringIO()
    handler = configure_json_logging("DEBUG", stream)
    secret_prompt = "my social security number is 078-05-1120"
    bad_token = make_token(secret="wrong-secret-0123456789-0123456789")
    try:
        seeded.post(E, json={"context": {"llm": {"prompt": secret_prompt}}}, headers=admin)
        seeded.post(E, json={"context": {}}, headers=bearer(bad_token))
        seeded.post(E, json={"context": {}}, headers={"X-API-Key": "lpk_abc_def"})
        logger.bind(token="t", prompt="p", request_id="r").info("with sensitive extras")
    finally:
        logger.remove(handler)
    text = stream.getvalue()
    assert "authentication failed" in text
    for secret in (secret_prompt, bad_token, admin["Authorization"][7:], "lpk_abc_def"):
        assert secret not in text
    last = json.loads(text.splitlines()[-1])
    assert "token" not in last
    assert "prompt" not in last
    assert last["request_id"] == "r"


def test_access_log_when_enabled() -> None:
    app, _ = build(access_log=True)
    stream = io.StringIO()
    handler = configure_json_logging("INFO", stream)
    try:
        with TestClient(app) as client:
            client.post(E, json={"context": {}}, headers=bearer(make_token()))
            client.get("/health")
    finally:
        logger.remove(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [e for e in entries if e["message"] == "request"]
    assert {(e["route"], e["status"]) for e in access} == {(E, 200), ("/health", 200)}
    assert all(e["request_id"] and e["duration_ms"] >= 0 for e in access)
    assert access[0]["principal"] == "alice"


def test_rate_limit_is_429_with_retry_after_and_ratelimit_headers() -> None:
    app, _ = build(memory_settings(rate_limits="evaluate=3/minute;read=2/minute"))
    with TestClient(app) as client:
        alice, bob = bearer(make_token(sub="alice")), bearer(make_token(sub="bob"))
        statuses = [
            client.post(E, json={"context": {}}, headers=alice).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        r = client.post(f"{E}/batch", json={"requests": [{"context": {}}]}, headers=alice)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["ratelimit-limit"] == "3"
        assert r.headers["ratelimit-remaining"] == "0"
        assert int(r.headers["ratelimit-reset"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        # Per principal, and per route class.
        assert client.post(E, json={"context": {}}, headers=bob).status_code == 200
        assert client.get("/api/v1/policies", headers=alice).status_code == 200


def test_api_keys_are_shown_once_work_and_can_be_revoked(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    created = seeded.post(
        "/api/v1/api-keys", json={"name": "gateway", "roles": ["evaluator"]}, headers=admin
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    key = created.json()["key"]
    key_id = created.json()["id"]
    assert created.headers["location"] == f"/api/v1/api-keys/{key_id}"
    listed = seeded.get("/api/v1/api-keys", headers=admin).json()["items"]
    assert [k["id"] for k in listed] == [key_id]
    assert key not in json.dumps(listed)
    use = {"X-API-Key": key}
    assert seeded.post(E, json={"context": {}}, headers=use).status_code == 200
    # The key's roles bound it: an evaluator cannot read policies.
    assert seeded.get("/api/v1/policies", headers=use).status_code == 403
    assert seeded.delete(f"/api/v1/api-keys/{key_id}", headers=admin).status_code == 204
    assert seeded.post(E, json={"context": {}}, headers=use).status_code == 401
    assert seeded.delete(f"/api/v1/api-keys/{key_id}", headers=admin).status_code == 204
    assert seeded.delete("/api/v1/api-keys/unknown", headers=admin).status_code == 404
    revoked = seeded.get("/api/v1/api-keys", params={"include_revoked": True}, headers=admin)
    assert revoked.json()["items"][0]["revoked_at"] is not None
    bad_role = {"name": "x", "roles": ["root"]}
    assert seeded.post("/api/v1/api-keys", json=bad_role, headers=admin).status_code == 400
    assert seeded.post(E, json={"context": {}}, headers={"X-API-Key": "lpk_x_y"}).status_code == 401


def test_a_malformed_authorization_header_is_401(client: TestClient[Litestar]) -> None:
    for value in ("Basic YWxpY2U6cHc=", "Bearer", "Bearer    ", "token"):
        r = client.post(E, json={"context": {}}, headers={"Authorization": value})
        assert r.status_code == 401, value


def test_jwt_not_configured_is_401_not_500() -> None:
    app, _ = build(memory_settings(jwt_secret=None))
    with TestClient(app) as client:
        r = client.post(E, json={"context": {}}, headers=bearer(make_token()))
        assert r.status_code == 401
        assert "bearer tokens are not enabled" in r.json()["detail"]


def test_cors_when_origins_are_configured() -> None:
    app, _ = build(cors_origins=("https://console.example",))
    with TestClient(app) as client:
        r = client.get("/health", headers={"Origin": "https://console.example"})
        assert r.headers["access-control-allow-origin"] == "https://console.example"


def test_metrics_read_the_decision_log_counters() -> None:
    class CountingLog(MemoryDecisionLog):
        def counters(self) -> DecisionLogCounters:
            return DecisionLogCounters(
                queued=7, spool_bytes=4096, appended=100, written=93, dropped=0
            )

    log = CountingLog()
    adapters = dataclasses.replace(
        memory_adapters(memory_settings(), SystemClock()), log=log, history=log
    )
    with TestClient(http_app(adapters=adapters)) as client:
        text = client.get("/metrics").text
    assert "llm_policy_decision_log_queue_depth 7.0" in text
    assert "llm_policy_decision_log_spool_bytes 4096.0" in text
    assert 'llm_policy_decision_log_records_total{state="written"} 93.0' in text
    assert 'llm_policy_decision_log_records_total{state="dropped"} 0.0' in text


def test_shutdown_closes_the_services_it_opened() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def factory() -> AsyncIterator[Services]:
        async with bootstrap(memory_settings()) as svc:
            events.append("opened")
            yield svc
            events.append("closing")
        events.append("closed")

    app = create_app(factory, make_settings())
    with TestClient(app) as client:
        assert client.post(E, json={"context": {}}, headers=bearer(make_token())).status_code == 200
        assert events == ["opened"]
    assert events == ["opened", "closing", "closed"]


def test_services_before_startup_answer_503() -> None:
    from policy_http._problems import ApiProblem
    from policy_http._runtime import Runtime

    runtime = Runtime(make_settings(), None)
    with pytest.raises(ApiProblem) as raised:
        _ = runtime.services
    assert raised.value.status == 503


def test_gc_freeze_after_startup_when_asked() -> None:
    import gc

    app = http_app(gc_freeze=True)
    try:
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_metrics_in_multiprocess_mode_read_the_directory(tmp_path: Any) -> None:
    # The worker processes write their counters there (PROMETHEUS_MULTIPROC_DIR, set by
    # the CLI before prometheus_client is imported); this process wrote none.
    app, _ = build(metrics_multiprocess_dir=str(tmp_path))
    with TestClient(app) as client:
        r = client.get("/metrics")
        assert r.status_code == 200
        assert "llm_policy_policies_loaded 0.0" in r.text
        assert "llm_policy_http_requests_total{" not in r.text


def test_standard_library_records_are_json_lines_too() -> None:
    """Regression (issue 13): psycopg's pool, granian and pg_ctl wrote plain-text lines
    among the JSON logs; a multi-line message stays one line, an exception its type."""
    import io
    import json as jsonlib
    import logging

    from loguru import logger as loguru_logger
    from policy_http.logs import configure_json_logging

    out = io.StringIO()
    handler_id = configure_json_logging("INFO", out)
    try:
        log = logging.getLogger("psycopg.pool")
        log.warning("error connecting in 'pool-1': connection refused\n\tIs the server running?")
        try:
            raise ConnectionError("could not connect")
        except ConnectionError:
            logging.getLogger("pg_ctl").exception("pg_ctl: stop failed\nno server running")
    finally:
        loguru_logger.remove(handler_id)
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (jsonlib.loads(line) for line in lines)
    assert first["logger"] == "psycopg.pool"
    assert "Is the server running?" in first["message"]
    assert second["error"] == "ConnectionError: could not connect"
    assert "Traceback" not in out.getvalue()
