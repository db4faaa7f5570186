"""Store mode on PostgreSQL: db, policy, evaluate history/stats and apikey commands.

Each test gets its own schema in the test database, so that `db reset` and
friends never touch another suite's tables. Needs the PostgreSQL of
LLM_POLICY_TEST_DATABASE_URL (fails, never skips, when it is missing in CI).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import Result

Invoke = Callable[..., Result]

DATABASE_URL = os.environ.get(
    "LLM_POLICY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """LLM_POLICY_* settings for a fresh schema of the test database; dropped afterwards."""
    try:
        psycopg.connect(DATABASE_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {DATABASE_URL} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {DATABASE_URL}")
    schema = f"cli_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("LLM_POLICY_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("LLM_POLICY_DATABASE_SCHEMA", schema)
    monkeypatch.setenv("LLM_POLICY_DATA_DIR", str(tmp_path / "data"))
    yield schema
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_db_migrate_status_rollback_reset(cli: Invoke, store: str) -> None:
    pending = cli("-o", "json", "db", "status")
    assert pending.exit_code == 0
    assert {row["state"] for row in json.loads(pending.stdout)} == {"pending"}
    migrated = cli("db", "migrate")
    assert migrated.exit_code == 0
    assert migrated.stdout.startswith("applied: 0001")
    again = cli("db", "migrate")
    assert again.stdout.strip() == "applied: nothing"
    applied = json.loads(cli("-o", "json", "db", "status").stdout)
    assert {row["state"] for row in applied} == {"applied"}
    last = applied[-1]["version"]
    rolled = cli("-o", "json", "db", "rollback")
    assert json.loads(rolled.stdout) == {"versions": [last]}
    refused = cli("db", "reset", input="n\n")
    assert refused.exit_code == 1
    assert "Continue?" in refused.stderr
    confirmed = cli("db", "reset", input="y\n")
    assert confirmed.exit_code == 0
    assert cli("db", "reset", "--yes").exit_code == 0
    assert {r["state"] for r in json.loads(cli("-o", "json", "db", "status").stdout)} == {"applied"}


def test_policy_lifecycle(cli: Invoke, store: str, policy_dir: Path, tmp_path: Path) -> None:
    created = cli("-o", "json", "policy", "create", str(policy_dir / "security.yaml"))
    assert created.exit_code == 0, created.stderr
    resource = json.loads(created.stdout)
    assert (resource["id"], resource["revision"], resource["status"]) == (
        "security-policy",
        1,
        "active",
    )
    duplicate = cli("policy", "create", str(policy_dir / "security.yaml"))
    assert duplicate.exit_code == 2
    assert "already exists" in duplicate.stderr

    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"llm": {"prompt": "select * from t"}, "user": {"id": "u1"}}))
    assert cli("evaluate", "run", "-c", str(ctx), "--request-id", "req-1").exit_code == 1

    drafted = cli("policy", "status", "security-policy", "draft")
    assert drafted.exit_code == 0
    assert "draft" in drafted.stdout
    shadow = cli("-o", "json", "evaluate", "run", "-c", str(ctx))
    assert shadow.exit_code == 0  # a draft never changes the outcome
    assert json.loads(shadow.stdout)["shadow"]["decision"] == "deny"

    stale = cli(
        "policy", "update", "security-policy", str(policy_dir / "security.yaml"), "--revision", "1"
    )
    assert stale.exit_code == 1
    assert "revision 2" in stale.stderr
    updated = cli("policy", "update", "security-policy", str(policy_dir / "security.yaml"))
    assert updated.exit_code == 0
    assert "revision   3" in updated.stdout

    history = json.loads(cli("-o", "json", "policy", "revisions", "security-policy").stdout)
    assert [r["revision"] for r in history["items"]] == [1, 2, 3]
    assert history["items"][1]["summary"] == "status: active -> draft"

    rolled = json.loads(cli("-o", "json", "policy", "rollback", "security-policy", "2").stdout)
    assert (rolled["revision"], rolled["status"]) == (4, "draft")
    old = json.loads(
        cli("-o", "json", "policy", "get", "security-policy", "--revision", "1").stdout
    )
    assert old["status"] == "active"
    assert old["document"]["metadata"]["id"] == "security-policy"

    listed = cli("policy", "list", "--status", "draft")
    assert "security-policy" in listed.stdout
    assert cli("policy", "delete", "security-policy").exit_code == 0
    assert cli("policy", "get", "security-policy").exit_code == 2
    assert cli("policy", "delete", "security-policy").exit_code == 2


def test_invalid_policy_is_refused_with_exit_3(cli: Invoke, store: str) -> None:
    result = cli("policy", "create", "-", input="metadata: {id: p}\nrules: [{id: r}]\n")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: <stdin>:2:")


def test_history_and_stats(cli: Invoke, store: str, policy_dir: Path, tmp_path: Path) -> None:
    assert cli("policy", "create", str(policy_dir / "security.yaml")).exit_code == 0
    lines = [
        {"context": {"llm": {"prompt": "select a from b"}}, "request_id": "h-deny"},
        {"context": {"llm": {"prompt": "hello"}}, "request_id": "h-allow"},
    ]
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert cli("evaluate", "batch", str(batch)).exit_code == 1

    denied = json.loads(cli("-o", "json", "evaluate", "history", "--decision", "deny").stdout)
    assert [r["request_id"] for r in denied["items"]] == ["h-deny"]
    by_id = json.loads(cli("-o", "json", "evaluate", "history", "--request-id", "h-allow").stdout)
    assert by_id["items"][0]["decision"] == "allow"
    table = cli("evaluate", "history", "--since", "2000-01-01T00:00:00Z")
    assert "h-deny" in table.stdout
    assert "h-allow" in table.stdout
    bad_time = cli("evaluate", "history", "--since", "yesterday")
    assert bad_time.exit_code == 2

    stats = json.loads(cli("-o", "json", "evaluate", "stats", "--days", "1").stdout)
    assert stats["total"] == 2
    assert stats["by_decision"] == {"deny": 1, "allow": 1}


DRAFT = """\
status: draft
metadata: {id: no-greetings}
rules:
  - id: hello
    condition: "llm.prompt == 'hello'"
    action: {decision: deny, reason: greetings are on trial}
"""


def test_history_shows_the_shadow_and_filters_where_it_differs(
    cli: Invoke, store: str, policy_dir: Path, tmp_path: Path
) -> None:
    assert cli("policy", "create", str(policy_dir / "security.yaml")).exit_code == 0
    assert cli("policy", "create", "-", input=DRAFT).exit_code == 0
    lines = [
        {"context": {"llm": {"prompt": "hello"}}, "request_id": "s-differs"},
        {"context": {"llm": {"prompt": "good day"}}, "request_id": "s-same"},
    ]
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert cli("evaluate", "batch", str(batch)).exit_code == 0

    every = json.loads(cli("-o", "json", "evaluate", "history").stdout)["items"]
    # The API's history item shape (policy_http.schemas.HistoryItem), in store mode too.
    from policy_http.schemas import HistoryItem

    assert all(set(item) == set(HistoryItem.__struct_fields__) for item in every)
    by_id = {item["request_id"]: item for item in every}
    assert by_id["s-differs"]["shadow"]["decision"] == "deny"
    assert by_id["s-differs"]["shadow"]["matched_rules"] == ["no-greetings/hello"]
    assert by_id["s-same"]["shadow"]["decision"] == "allow"
    differs = json.loads(cli("-o", "json", "evaluate", "history", "--shadow-differs").stdout)
    assert [item["request_id"] for item in differs["items"]] == ["s-differs"]
    table = cli("evaluate", "history", "--shadow-differs")
    assert table.exit_code == 0
    assert "s-differs" in table.stdout
    assert "deny (no-greetings/hello)" in table.stdout
    assert "s-same" not in table.stdout


def test_apikey_create_list_revoke(cli: Invoke, store: str) -> None:
    created = cli("-o", "json", "apikey", "create", "ci-bot", "--role", "evaluator")
    assert created.exit_code == 0
    key = json.loads(created.stdout)
    assert key["key"].startswith("lpk_")
    assert "key_hash" not in key
    table = cli("apikey", "list")
    assert key["id"] in table.stdout
    assert key["key"] not in table.stdout
    assert cli("apikey", "revoke", key["id"]).exit_code == 0
    assert key["id"] not in cli("apikey", "list").stdout
    assert key["id"] in cli("apikey", "list", "--all").stdout
    unknown = cli("apikey", "revoke", "nope")
    assert unknown.exit_code == 2
    plain = cli("apikey", "create", "other", "--role", "auditor")
    assert plain.stdout.startswith("lpk_")
    assert "shown only this once" in plain.stderr


def test_unreachable_database_exits_4(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_POLICY_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    result = cli("policy", "list")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: the policy store is unreachable")
    assert cli("db", "status").exit_code == 4


def test_memory_deployment_has_no_database(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_POLICY_DEPLOYMENT", "memory")
    result = cli("db", "migrate")
    assert result.exit_code == 2
    assert "no database" in result.stderr


def test_memory_deployment_seeds_and_evaluates(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, policy_dir: Path
) -> None:
    monkeypatch.setenv("LLM_POLICY_DEPLOYMENT", "memory")
    monkeypatch.setenv("LLM_POLICY_SEED_POLICIES", str(policy_dir))
    listed = json.loads(cli("-o", "json", "policy", "list").stdout)
    assert [p["id"] for p in listed["items"]] == ["model-policy", "security-policy"]
    result = cli("evaluate", "run", "-c", "-", input='{"llm": {"prompt": "select 1 from x"}}')
    assert result.exit_code == 1


def test_db_commands_refuse_server_mode(cli: Invoke) -> None:
    result = cli("--server", "http://127.0.0.1:9", "db", "reset", "--yes")
    assert result.exit_code == 2
    assert "do not go through --server" in result.stderr


def test_an_unmigrated_database_is_named_not_crashed_on(
    cli: Invoke, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_POLICY_MIGRATE_ON_START", "false")
    result = cli("policy", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the database schema is not up to date")
    assert "llm-policy db migrate" in result.stderr
    assert cli("db", "migrate").exit_code == 0
    assert cli("policy", "list").exit_code == 0


def test_export_round_trips_into_a_fresh_store(
    cli: Invoke, store: str, policy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("security.yaml", "models.yaml"):
        assert cli("policy", "create", str(policy_dir / name)).exit_code == 0
    assert cli("policy", "status", "model-policy", "draft").exit_code == 0
    before = json.loads(cli("-o", "json", "policy", "list").stdout)["items"]

    out = tmp_path / "backup"
    exported = cli("policy", "export", "--dir", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout == ""
    assert exported.stderr == f"exported 2 policies to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["model-policy.yaml", "security-policy.yaml"]
    assert cli("validate", str(out)).exit_code == 0

    one = cli("policy", "export", "security-policy")
    assert one.exit_code == 0
    assert one.stdout == (out / "security-policy.yaml").read_text()

    monkeypatch.setenv("LLM_POLICY_DATABASE_SCHEMA", f"{store}_copy")
    try:
        for path in sorted(out.iterdir()):
            created = cli("policy", "create", str(path))
            assert created.exit_code == 0, created.stderr
        assert cli("policy", "create", "-", input=one.stdout).exit_code == 2  # already there
        after = json.loads(cli("-o", "json", "policy", "list").stdout)["items"]
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{store}_copy" CASCADE')
    fields = ("id", "status", "document", "hash")
    assert [{k: p[k] for k in fields} for p in after] == [{k: p[k] for k in fields} for p in before]
    assert [p["status"] for p in after] == ["draft", "active"]


def test_export_of_an_unknown_id_is_a_usage_error(cli: Invoke, store: str) -> None:
    result = cli("policy", "export", "nope")
    assert result.exit_code == 2
    assert "nope" in result.stderr
