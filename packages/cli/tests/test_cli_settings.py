"""Settings: typed, from LLM_POLICY_* and flags, every problem reported on its own line."""

from __future__ import annotations

import pytest
from policy_cli.settings import (
    DEV_JWT_SECRET,
    Settings,
    SettingsError,
    load_settings,
    masked,
)


def problems_of(env: dict[str, str], serving: bool = False, **flags: object) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env, flags, serving=serving)
    return info.value.problems


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.env == "production"
    assert settings.deployment == "single"
    assert settings.port == 8080


def test_environment_is_typed_and_flags_win() -> None:
    env = {
        "LLM_POLICY_PORT": "9000",
        "LLM_POLICY_ENV": "development",
        "LLM_POLICY_ACCESS_LOG": "true",
        "LLM_POLICY_DATABASE_URL": "postgresql://u:pw@db.internal:5432/policies",
        "PATH": "/usr/bin",  # not ours: ignored
    }
    settings = load_settings(env, {"port": 9100, "host": None})
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"
    assert settings.development
    assert settings.access_log is True
    assert settings.database_url == "postgresql://u:pw@db.internal:5432/policies"


def test_unknown_variable_is_one_line_with_a_suggestion() -> None:
    found = problems_of({"LLM_POLICY_DATABSE_URL": "postgresql://x/y"})
    assert found == [
        "LLM_POLICY_DATABSE_URL: unknown setting; did you mean LLM_POLICY_DATABASE_URL? "
        "(`llm-policy config show` lists the settings)"
    ]


def test_test_suite_variables_are_not_settings_and_not_rejected() -> None:
    env = {"LLM_POLICY_TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"}
    assert load_settings(env) == Settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LLM_POLICY_DATABASE_URL", "mysql://db/x", "expected postgresql://host[:port]/..."),
        ("LLM_POLICY_DATABASE_URL", "postgresql:///nohost", "names no host"),
        ("LLM_POLICY_REDIS_URL", "localhost:6379", "expected redis://host[:port]/..."),
        ("LLM_POLICY_SERVER", "ftp://example.com", "expected http://host[:port]/..."),
        ("LLM_POLICY_OTLP_ENDPOINT", "http://h:99999", "bad port"),
    ],
)
def test_bad_url_is_one_clear_line(name: str, value: str, expected: str) -> None:
    found = problems_of({name: value})
    assert len(found) == 1
    assert found[0].startswith(f"{name}: ")
    assert expected in found[0]


def test_password_in_a_bad_url_is_not_echoed() -> None:
    (line,) = problems_of({"LLM_POLICY_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in line


def test_wrong_types_are_reported_with_the_expected_form() -> None:
    found = problems_of({"LLM_POLICY_PORT": "eighty", "LLM_POLICY_ENV": "staging"})
    assert found == [
        "LLM_POLICY_ENV: 'staging' is not valid; expected one of development, production",
        "LLM_POLICY_PORT: 'eighty' is not valid; expected an integer",
    ]


def test_flag_problems_name_the_flag() -> None:
    assert problems_of({}, port=70000) == ["--port: 70000 is not a port (1-65535)"]


def test_server_outside_development_needs_a_jwt_secret() -> None:
    (line,) = problems_of({}, serving=True)
    assert line.startswith("LLM_POLICY_JWT_SECRET: not set")
    assert "LLM_POLICY_ENV=development" in line
    # the same settings are fine for a command that serves nothing
    assert load_settings({}).jwt_secret is None


def test_development_server_uses_the_development_secret() -> None:
    settings = load_settings({"LLM_POLICY_ENV": "development"}, serving=True)
    assert settings.effective_jwt_secret() == DEV_JWT_SECRET
    configured = load_settings({"LLM_POLICY_JWT_SECRET": "s3cret"}, serving=True)
    assert configured.effective_jwt_secret() == "s3cret"


def test_cluster_needs_both_urls() -> None:
    found = problems_of({"LLM_POLICY_DEPLOYMENT": "cluster"})
    assert [line.split(":")[0] for line in found] == [
        "LLM_POLICY_DATABASE_URL",
        "LLM_POLICY_REDIS_URL",
    ]


def test_every_problem_is_reported_at_once() -> None:
    env = {
        "LLM_POLICY_NOPE": "1",
        "LLM_POLICY_REDIS_URL": "nope",
        "LLM_POLICY_PORT": "x",
    }
    assert len(problems_of(env)) == 2  # unknown + type; URL checks run once types are sound
    assert len(problems_of({"LLM_POLICY_REDIS_URL": "nope"}, serving=True)) == 2


def test_masked_hides_secrets_and_url_passwords() -> None:
    settings = load_settings(
        {
            "LLM_POLICY_JWT_SECRET": "topsecret",
            "LLM_POLICY_DATABASE_URL": "postgresql://app:pw123@db:5432/p",
            "LLM_POLICY_API_KEY": "k",
        }
    )
    shown = masked(settings)
    assert shown["jwt_secret"] == "***"
    assert shown["api_key"] == "***"
    assert shown["database_url"] == "postgresql://app:***@db:5432/p"
    assert shown["token"] is None
    assert "topsecret" not in repr(shown)


def test_an_unusable_context_schema_is_one_clear_line(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "schema.json"
    bad.write_text("{not json")
    (problem,) = problems_of({"LLM_POLICY_CONTEXT_SCHEMA": str(bad)})
    assert problem.startswith(f"LLM_POLICY_CONTEXT_SCHEMA: {bad}: not valid JSON or YAML")
    good = Path(str(tmp_path)) / "ok.json"
    good.write_text('{"properties": {}}')
    assert load_settings({"LLM_POLICY_CONTEXT_SCHEMA": str(good)}).context_schema == str(good)


def test_an_unusable_rate_limit_spec_is_one_clear_line() -> None:
    (problem,) = problems_of({"LLM_POLICY_RATE_LIMITS": "evaluate=lots"})
    assert problem.startswith("LLM_POLICY_RATE_LIMITS: rate limit 'evaluate=lots'")
    good = load_settings({"LLM_POLICY_RATE_LIMITS": "evaluate=10/second,100 per 5 minutes"})
    assert good.rate_limits == "evaluate=10/second,100 per 5 minutes"
