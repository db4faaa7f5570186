"""`config show|check`, `token`, and settings validated when any command starts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from policy_cli.settings import DEV_JWT_SECRET

Invoke = Callable[..., Result]


def decode(token: str, secret: str) -> dict[str, Any]:
    """Check an HS256 signature by hand and return the claims."""
    head, body, sig = token.split(".")
    expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == expected
    assert json.loads(base64.urlsafe_b64decode(head + "==="))["alg"] == "HS256"
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "==="))
    return claims


def test_config_show_masks_secrets(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_POLICY_JWT_SECRET", "super-secret-value")
    monkeypatch.setenv("LLM_POLICY_DATABASE_URL", "postgresql://app:pa55@db:5432/policies")
    table = cli("config", "show")
    assert table.exit_code == 0
    assert "super-secret-value" not in table.stdout
    assert "pa55" not in table.stdout
    assert "LLM_POLICY_JWT_SECRET" in table.stdout
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["LLM_POLICY_JWT_SECRET"][1:] == ["***", "environment"]
    assert rows["LLM_POLICY_PORT"][1:] == ["8080", "default"]
    flagged = cli("--server", "http://h:1", "config", "show").stdout
    server_row = next(r for r in flagged.splitlines() if r.startswith("LLM_POLICY_SERVER "))
    assert server_row.split()[1:] == ["http://h:1", "flag"]
    shown = json.loads(cli("-o", "json", "config", "show").stdout)
    assert shown["jwt_secret"] == "***"
    assert shown["database_url"] == "postgresql://app:***@db:5432/policies"
    assert shown["port"] == 8080


def test_flags_override_the_environment(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_POLICY_SERVER", "http://a.example:1")
    shown = json.loads(cli("-o", "json", "--server", "http://b.example:2", "config", "show").stdout)
    assert shown["server"] == "http://b.example:2"


def test_config_check_needs_a_secret_outside_development(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = cli("config", "check")
    assert failed.exit_code == 2
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: LLM_POLICY_JWT_SECRET: not set")
    monkeypatch.setenv("LLM_POLICY_ENV", "development")
    assert cli("config", "check").exit_code == 0


def test_any_command_refuses_bad_settings_one_line_each(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_POLICY_DATABSE_URL", "postgresql://x/y")
    monkeypatch.setenv("LLM_POLICY_REDIS_URL", "redis:/nohost")
    result = cli("validate", "-", input="metadata: {id: p}\nrules: []\n")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: LLM_POLICY_DATABSE_URL: unknown setting; did you mean "
        "LLM_POLICY_DATABASE_URL? (`llm-policy config show` lists the settings)",
    ]
    monkeypatch.delenv("LLM_POLICY_DATABSE_URL")
    result = cli("validate", "-", input="metadata: {id: p}\nrules: []\n")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "error: LLM_POLICY_REDIS_URL: 'redis:/nohost' is not a valid URL: it names no host"
    )
    assert result.stderr.splitlines()[-1].startswith("hint: ")


def test_token_in_development_uses_the_development_secret(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_POLICY_ENV", "development")
    result = cli("token")
    assert result.exit_code == 0
    claims = decode(result.stdout.strip(), DEV_JWT_SECRET)
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 86_400


def test_token_with_a_configured_secret_and_claims(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_POLICY_JWT_SECRET", "a-configured-secret-0123456789")
    monkeypatch.setenv("LLM_POLICY_JWT_ISSUER", "https://issuer.example")
    monkeypatch.setenv("LLM_POLICY_JWT_AUDIENCE", "llm-policy")
    result = cli(
        "-o",
        "json",
        "token",
        "--sub",
        "alice",
        "--role",
        "auditor",
        "--role",
        "evaluator",
        "--ttl",
        "60",
    )
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    claims = decode(out["token"], "a-configured-secret-0123456789")
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["auditor", "evaluator"]
    assert claims["iss"] == "https://issuer.example"
    assert claims["aud"] == "llm-policy"
    assert claims["exp"] - claims["iat"] == 60


def test_token_without_secret_outside_development(cli: Invoke) -> None:
    result = cli("token")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no HS256 secret")
    bad_role = cli("token", "--role", "root")
    assert bad_role.exit_code == 2


def test_serve_refuses_to_start_without_a_secret(cli: Invoke) -> None:
    result = cli("serve")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("error: LLM_POLICY_JWT_SECRET: not set")
    grpc = cli("grpc", "serve")
    assert grpc.exit_code == 2
    assert grpc.stderr.splitlines()[0].startswith("error: LLM_POLICY_JWT_SECRET: not set")


def test_serve_memory_refuses_several_workers(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_POLICY_ENV", "development")
    monkeypatch.setenv("LLM_POLICY_DEPLOYMENT", "memory")
    result = cli("serve", "--workers", "2")
    assert result.exit_code == 2
    assert "memory deployment" in result.stderr
    bad_port = cli("serve", "--port", "0")
    assert bad_port.exit_code == 2
    assert bad_port.stderr.startswith("error: --port: 0 is not a port")


def test_version_and_help(cli: Invoke) -> None:
    assert cli("--version").stdout.startswith("llm-policy, version ")
    helped = cli("--help")
    for command in ("validate", "test", "evaluate", "policy", "db", "apikey", "serve", "grpc"):
        assert f"  {command}" in helped.stdout


def test_banner_shows_a_token_only_when_one_can_be_signed() -> None:
    from policy_cli.commands.serve import banner
    from policy_cli.settings import Settings

    dev = banner(Settings(env="development", port=9000), "memory")
    assert "  OpenAPI:  http://127.0.0.1:9000/schema/swagger" in dev
    assert "export TOKEN=" in dev
    jwks_only = banner(Settings(env="development", jwks_file="/keys.json"), "memory")
    assert "export TOKEN=" not in jwks_only
    production = banner(Settings(jwt_secret="s", host="0.0.0.0"), "PostgreSQL")
    assert "export TOKEN=" not in production
    assert "http://127.0.0.1:8080/api/v1" in production


def test_serve_on_a_taken_port_is_one_clear_line(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setenv("LLM_POLICY_ENV", "development")
    monkeypatch.setenv("LLM_POLICY_DEPLOYMENT", "memory")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_serve_prints_the_token_that_llm_policy_token_mints(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One function mints both: the same subject, roles and lifetime (it once said
    # `sub: developer` in the banner and `sub: admin` from `llm-policy token`).
    from policy_cli.commands.serve import banner
    from policy_cli.settings import Settings

    monkeypatch.setenv("LLM_POLICY_ENV", "development")
    minted = decode(cli("token").stdout.strip(), DEV_JWT_SECRET)
    exported = next(
        line
        for line in banner(Settings(env="development"), "memory").splitlines()
        if "export TOKEN=" in line
    )
    printed = decode(exported.split("=", 1)[1], DEV_JWT_SECRET)

    def shape(claims: dict[str, Any]) -> tuple[Any, ...]:
        return claims["sub"], claims["roles"], claims["exp"] - claims["iat"]

    assert shape(printed) == shape(minted) == ("admin", ["admin"], 86_400)
