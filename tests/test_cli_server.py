"""End to end, in subprocesses: `llm-policy serve`, then every server-mode command against it.

The server runs the memory deployment in development (fast to start, nothing
to clean up); the commands talk to it with `--server URL --token JWT`, which
checks exit codes and output exactly as a shell script would see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_cli.testing import clean_env, free_port, llm_policy, serving

ROOT = Path(__file__).resolve().parents[1]
POLICY = """\
metadata: {id: walkthrough, tags: [demo]}
rules:
  - id: deny-big-models-for-free
    condition: "team.tier == 'free' && llm.model in ['gpt-4', 'gpt-4o']"
    action: {decision: deny, reason: "{{ llm.model }} needs a paid plan"}
"""
DENIED = {"team": {"tier": "free"}, "llm": {"model": "gpt-4o"}}
ALLOWED = {"team": {"tier": "free"}, "llm": {"model": "gpt-4o-mini"}}


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        llm_policy(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A running development server; yields its URL and a client environment with a token."""
    port = free_port()
    data = tmp_path_factory.mktemp("serve-data")
    env = clean_env(
        LLM_POLICY_ENV="development",
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_DATA_DIR=str(data),
        LLM_POLICY_PORT=str(port),
    )
    command = llm_policy("serve")
    with serving(command, port=port, env=env, log=data / "server.log", cwd=ROOT) as srv:
        token = cli("token", env=clean_env(LLM_POLICY_ENV="development")).stdout.strip()
        yield srv.url, clean_env(LLM_POLICY_SERVER=srv.url, LLM_POLICY_TOKEN=token)
    banner = (data / "server.log").read_text()
    assert f"OpenAPI:  http://127.0.0.1:{port}/schema/swagger" in banner
    assert "export TOKEN=" in banner


def test_policy_commands_against_the_server(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = server
    path = tmp_path / "walkthrough.yaml"
    path.write_text(POLICY)
    created = cli("-o", "json", "policy", "create", str(path), env=env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["revision"] == 1

    valid = cli("policy", "validate", str(path), env=env)
    assert valid.returncode == 0, valid.stderr
    invalid = cli("policy", "validate", "-", env=env, stdin="metadata: {id: x}\nrulez: []\n")
    assert invalid.returncode == 3
    assert "rulez" in invalid.stderr

    listed = cli("policy", "list", "--tag", "demo", env=env)
    assert listed.returncode == 0
    assert "walkthrough" in listed.stdout
    got = json.loads(cli("-o", "json", "policy", "get", "walkthrough", env=env).stdout)
    assert got["document"]["metadata"]["id"] == "walkthrough"

    updated = cli("policy", "update", "walkthrough", str(path), env=env)
    assert updated.returncode == 0, updated.stderr
    stale = cli("policy", "update", "walkthrough", str(path), "--revision", "1", env=env)
    assert stale.returncode == 1  # a revision conflict, as in store mode
    assert "412" in stale.stderr
    assert "hint: the policy changed meanwhile" in stale.stderr
    assert cli("policy", "status", "walkthrough", "draft", env=env).returncode == 0
    revisions = json.loads(cli("-o", "json", "policy", "revisions", "walkthrough", env=env).stdout)
    assert [r["revision"] for r in revisions["items"]] == [1, 2, 3]
    rolled = json.loads(cli("-o", "json", "policy", "rollback", "walkthrough", "1", env=env).stdout)
    assert (rolled["revision"], rolled["status"]) == (4, "active")

    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(DENIED))
    denied = cli("evaluate", "run", "-c", str(ctx), "--policy", "walkthrough", env=env)
    assert denied.returncode == 1
    assert "gpt-4o needs a paid plan" in denied.stdout
    ctx.write_text(json.dumps(ALLOWED))
    allowed = cli("evaluate", "run", "-c", str(ctx), "--policy", "walkthrough", env=env)
    assert allowed.returncode == 0

    assert cli("policy", "delete", "walkthrough", env=env).returncode == 0
    missing = cli("policy", "get", "walkthrough", env=env)
    assert missing.returncode == 2
    assert "404" in missing.stderr


def test_batch_history_and_stats_against_the_server(server: tuple[str, dict[str, str]]) -> None:
    _, env = server
    lines = "".join(
        json.dumps({"context": c, "request_id": f"srv-{i}"}) + "\n"
        for i, c in enumerate([ALLOWED, {"user": {"id": "x"}}, ALLOWED])
    )
    batch = cli("evaluate", "batch", "-", env=env, stdin=lines)
    assert batch.returncode == 0, batch.stderr
    decisions = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [d["request_id"] for d in decisions] == ["srv-0", "srv-1", "srv-2"]
    history = json.loads(
        cli("-o", "json", "evaluate", "history", "--request-id", "srv-1", env=env).stdout
    )
    assert [r["request_id"] for r in history["items"]] == ["srv-1"]
    assert {"obligations", "errors", "shadow"} <= set(history["items"][0])
    # No draft policy is loaded: no decision has a shadow that differs.
    differs = cli("-o", "json", "evaluate", "history", "--shadow-differs", env=env)
    assert differs.returncode == 0, differs.stderr
    assert json.loads(differs.stdout)["items"] == []
    stats = cli("-o", "json", "evaluate", "stats", "--days", "1", env=env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["total"] >= 3


def test_batch_with_an_unknown_policy_against_the_server(
    server: tuple[str, dict[str, str]],
) -> None:
    """Regression (issue 13): the server answers each batch item; the CLI prints the bad
    one's error on its line (exit 2) and the others' decisions."""
    _, env = server
    lines = "".join(
        json.dumps(x) + "\n"
        for x in [
            {"context": ALLOWED, "request_id": "u-0"},
            {"context": ALLOWED, "policies": ["nope"], "request_id": "u-1"},
            {"context": ALLOWED, "request_id": "u-2"},
        ]
    )
    batch = cli("evaluate", "batch", "-", env=env, stdin=lines)
    assert batch.returncode == 2, batch.stderr
    out = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [o.get("request_id") for o in out] == ["u-0", None, "u-2"]
    assert out[1]["line"] == 2
    assert out[1]["code"] == "policy_not_found"
    assert "'nope'" in out[1]["error"]
    assert "kind" not in out[0]


def test_apikeys_against_the_server(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, env = server
    created = cli("-o", "json", "apikey", "create", "ci", "--role", "evaluator", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("lpk_")
    # the key itself authenticates an evaluation, and nothing more
    with_key = clean_env(LLM_POLICY_SERVER=url, LLM_POLICY_API_KEY=key["key"])
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(ALLOWED))
    assert cli("evaluate", "run", "-c", str(ctx), env=with_key).returncode == 0
    forbidden = cli("policy", "list", env=with_key)
    assert forbidden.returncode == 2
    assert "403" in forbidden.stderr
    assert key["id"] in cli("apikey", "list", env=env).stdout
    assert cli("apikey", "revoke", key["id"], env=env).returncode == 0


def test_missing_token_is_a_clear_usage_error(server: tuple[str, dict[str, str]]) -> None:
    url, _ = server
    result = cli("policy", "list", env=clean_env(LLM_POLICY_SERVER=url))
    assert result.returncode == 2
    assert "401" in result.stderr
    assert "--token" in result.stderr


def test_unreachable_server_exits_4() -> None:
    env = clean_env(LLM_POLICY_SERVER=f"http://127.0.0.1:{free_port()}")
    result = cli("policy", "list", env=env)
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach the server")


def test_several_workers_on_postgresql(tmp_path: Path) -> None:
    """Workers share one store (seeded once by the parent) and one /metrics."""
    import uuid

    import psycopg

    database = os.environ.get(
        "LLM_POLICY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    try:
        psycopg.connect(database, connect_timeout=3).close()
    except psycopg.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {database} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {database}")
    schema = f"cli_serve_{uuid.uuid4().hex[:10]}"
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "walkthrough.yaml").write_text(POLICY)
    port = free_port()
    env = clean_env(
        LLM_POLICY_JWT_SECRET="workers-test-secret",
        LLM_POLICY_DATABASE_URL=database,
        LLM_POLICY_DATABASE_SCHEMA=schema,
        LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
        LLM_POLICY_PORT=str(port),
    )
    command = llm_policy("serve", "--workers", "2", "--seed", str(seed))
    try:
        with serving(command, port=port, env=env, log=tmp_path / "server.log", cwd=ROOT) as srv:
            url = srv.url
            token = cli("token", env=clean_env(LLM_POLICY_JWT_SECRET="workers-test-secret"))
            client = clean_env(LLM_POLICY_SERVER=url, LLM_POLICY_TOKEN=token.stdout.strip())
            listed = json.loads(cli("-o", "json", "policy", "list", env=client).stdout)
            assert [p["id"] for p in listed["items"]] == ["walkthrough"]
            lines = "".join(json.dumps({"context": DENIED}) + "\n" for _ in range(6))
            for _ in range(3):  # separate connections, so both workers are likely to answer
                assert cli("evaluate", "batch", "-", env=client, stdin=lines).returncode == 1
            with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
                metrics = resp.read().decode()
            assert 'llm_policy_decisions_total{decision="deny"} 18.0' in metrics
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert "Development token" not in (tmp_path / "server.log").read_text()


def test_export_from_the_server_round_trips(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = server
    path = tmp_path / "exported-demo.yaml"
    path.write_text(POLICY.replace("id: walkthrough", "id: exported-demo"))
    created = cli("-o", "json", "policy", "create", str(path), env=env)
    assert created.returncode == 0, created.stderr
    stored = json.loads(created.stdout)

    one = cli("policy", "export", "exported-demo", env=env)
    assert one.returncode == 0, one.stderr
    out = tmp_path / "backup"
    every = cli("policy", "export", "--dir", str(out), env=env)
    assert every.returncode == 0, every.stderr
    assert (out / "exported-demo.yaml").read_text() == one.stdout
    assert cli("validate", str(out), env=env).returncode == 0

    # Into a fresh store: the memory deployment of a new process.
    fresh = clean_env(LLM_POLICY_DEPLOYMENT="memory")
    copied = cli("-o", "json", "policy", "create", "-", env=fresh, stdin=one.stdout)
    assert copied.returncode == 0, copied.stderr
    copy = json.loads(copied.stdout)
    assert (copy["document"], copy["hash"]) == (stored["document"], stored["hash"])
    assert cli("policy", "delete", "exported-demo", env=env).returncode == 0
