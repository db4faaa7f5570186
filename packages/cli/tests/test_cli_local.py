"""Local-files mode (`--policies PATH`): validate, evaluate run/batch, policy list/get."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from ruamel.yaml import YAML

Invoke = Callable[..., Result]

CTX_SQL = {"llm": {"prompt": "SELECT * FROM users", "max_tokens": 10}, "user": {"id": "u1"}}
CTX_OK = {"llm": {"prompt": "What is a B-tree?", "max_tokens": 10}, "user": {"id": "u1"}}
CTX_FREE = {"llm": {"prompt": "hi", "model": "gpt-4o"}, "team": {"tier": "free"}}


def write_json(path: Path, value: object) -> str:
    path.write_text(json.dumps(value))
    return str(path)


# --- validate ---------------------------------------------------------------------


def test_validate_valid_files_and_directories(cli: Invoke, policy_dir: Path) -> None:
    result = cli("validate", str(policy_dir))
    assert result.exit_code == 0
    assert f"{policy_dir / 'security.yaml'}: ok (security-policy)" in result.stdout
    assert f"{policy_dir / 'models.yaml'}: ok (model-policy)" in result.stdout


def test_validate_reports_every_error_with_position_and_exits_3(
    cli: Invoke, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {id: p}\npriorty: 3\nrules:\n  - id: r\n    condition: 'a ==='\n")
    result = cli("validate", str(bad))
    assert result.exit_code == 3
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(lines) >= 2
    assert lines[0].startswith(f"{bad}:2:1: error: ")
    assert "priorty" in lines[0]
    assert f"{bad}: invalid" in result.stdout


def test_validate_json_output_lists_errors(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {id: p}\nrules: 3\n")
    result = cli("--output", "json", "validate", str(bad))
    assert result.exit_code == 3
    (outcome,) = json.loads(result.stdout)
    assert outcome["valid"] is False
    assert outcome["errors"][0]["line"] == 2


def test_validate_finds_an_id_defined_in_two_files(cli: Invoke, tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("metadata: {id: same}\nrules: []\n")
    result = cli("validate", str(tmp_path))
    assert result.exit_code == 3
    assert "same" in result.stderr


def test_validate_reads_stdin(cli: Invoke) -> None:
    result = cli("validate", "-", input="metadata: {id: p}\nrules: []\n")
    assert result.exit_code == 0
    assert "<stdin>: ok (p)" in result.stdout


def test_validate_strict_fails_on_warnings(cli: Invoke, tmp_path: Path) -> None:
    shadowed = tmp_path / "shadowed.yaml"
    shadowed.write_text(
        "metadata: {id: p}\nrules:\n"
        "  - id: all\n    action: {decision: deny}\n"
        "  - id: never\n    condition: \"user.id == 'x'\"\n    action: {decision: warn}\n"
    )
    relaxed = cli("validate", str(shadowed))
    assert relaxed.exit_code == 0
    assert ": warning: " in relaxed.stderr
    strict = cli("validate", "--strict", str(shadowed))
    assert strict.exit_code == 3
    assert f"{shadowed}:5:9: warning: rule p/never is shadowed" in strict.stderr
    assert strict.stdout == f"{shadowed}: failed (1 warning(s); --strict)\n"
    assert "ok" not in strict.stdout
    assert (
        "error: 1 warning(s) in 1 file(s), and --strict makes warnings fail validation"
        in strict.stderr
    )
    as_json = cli("validate", "--strict", str(shadowed), "-o", "json")
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout)[0]["warnings"]
    assert "--strict makes warnings fail validation" in as_json.stderr


def test_validate_with_a_context_schema_warns_about_unknown_paths(
    cli: Invoke, tmp_path: Path
) -> None:
    schema = write_json(
        tmp_path / "schema.json", {"properties": {"llm": {"properties": {"model": {}}}}}
    )
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "metadata: {id: p}\nrules:\n  - id: r\n    condition: \"llm.modle == 'x'\"\n"
        "    action: {decision: deny}\n"
    )
    relaxed = cli("validate", "--context-schema", schema, str(policy))
    assert relaxed.exit_code == 0
    assert (
        f"{policy}:3:9: warning: p: rule r reads llm.modle, which the context schema does not define"
        in relaxed.stderr
    )
    assert cli("validate", "--strict", "--context-schema", schema, str(policy)).exit_code == 3
    from_env = cli("validate", str(policy), env={"LLM_POLICY_CONTEXT_SCHEMA": schema})
    assert "llm.modle" in from_env.stderr
    assert "context schema" not in cli("validate", str(policy)).stderr


def test_validate_with_a_bad_context_schema_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("metadata: {id: p}\nrules: []\n")
    result = cli("validate", "--context-schema", str(tmp_path / "none.json"), str(policy))
    assert result.exit_code == 2
    assert "none.json: cannot read" in result.stderr


def test_validate_missing_file_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read")


# --- evaluate run -------------------------------------------------------------------


def test_evaluate_denied_exits_1(cli: Invoke, policy_dir: Path, tmp_path: Path) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_SQL)
    result = cli("evaluate", "run", "--policies", str(policy_dir), "--context", ctx)
    assert result.exit_code == 1
    assert "decision            deny" in result.stdout
    assert "SQL injection attempt by u1" in result.stdout


def test_evaluate_allowed_exits_0_json(cli: Invoke, policy_dir: Path, tmp_path: Path) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    result = cli("-o", "json", "evaluate", "run", "-p", str(policy_dir), "-c", ctx)
    assert result.exit_code == 0
    decision = json.loads(result.stdout)
    assert decision["decision"] == "allow"
    assert decision["allowed"] is True
    assert decision["cached"] is False
    assert decision["request_id"]
    assert decision["policy_set"].startswith("sha256:")


def test_evaluate_modify_is_allowed_and_yaml(cli: Invoke, policy_dir: Path, tmp_path: Path) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_FREE)
    result = cli("-o", "yaml", "evaluate", "run", "-p", str(policy_dir), "-c", ctx)
    assert result.exit_code == 0
    decision = YAML(typ="safe", pure=True).load(result.stdout)
    assert decision["decision"] == "modify"
    assert decision["modifications"] == {"llm.model": "gpt-4o-mini"}


def test_evaluate_context_from_stdin_as_yaml(cli: Invoke, policy_dir: Path) -> None:
    text = "llm: {prompt: select x from y}\nuser: {id: u9}\n"
    result = cli("-o", "json", "evaluate", "run", "-p", str(policy_dir), "-c", "-", input=text)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == "SQL injection attempt by u9"


def test_evaluate_restricted_to_ids_and_namespace(
    cli: Invoke, policy_dir: Path, tmp_path: Path
) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_SQL)
    only_models = cli(
        "evaluate", "run", "-p", str(policy_dir), "--policy", "model-policy", "-c", ctx
    )
    assert only_models.exit_code == 0
    # the design's `--policies ids` form: a value that is no path is a list of ids
    by_ids = cli("evaluate", "run", "-p", str(policy_dir), "-p", "model-policy", "-c", ctx)
    assert by_ids.exit_code == 0
    other_ns = cli("evaluate", "run", "-p", str(policy_dir), "--namespace", "dev", "-c", ctx)
    assert other_ns.exit_code == 0
    prod = cli("evaluate", "run", "-p", str(policy_dir), "--namespace", "prod", "-c", ctx)
    assert prod.exit_code == 1


def test_evaluate_unknown_policy_id_is_a_usage_error(
    cli: Invoke, policy_dir: Path, tmp_path: Path
) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    result = cli("evaluate", "run", "-p", str(policy_dir), "--policy", "ghost", "-c", ctx)
    assert result.exit_code == 2
    assert "'ghost'" in result.stderr


def test_evaluate_trace_explains_rules(cli: Invoke, policy_dir: Path, tmp_path: Path) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    result = cli("evaluate", "run", "-p", str(policy_dir), "-c", ctx, "--trace")
    assert result.exit_code == 0
    assert "trace rule security-policy/block-sql: not_matched" in result.stdout


def test_evaluate_with_an_invalid_policy_exits_3(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("metadata: {id: p}\nrules: [{id: r}]\n")
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    result = cli("evaluate", "run", "-p", str(tmp_path / "bad.yaml"), "-c", ctx)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: {tmp_path / 'bad.yaml'}:")


def test_evaluate_bad_context_is_a_usage_error(cli: Invoke, policy_dir: Path) -> None:
    as_list = cli("evaluate", "run", "-p", str(policy_dir), "-c", "-", input="[1, 2]")
    assert as_list.exit_code == 2
    assert "must be a JSON/YAML object" in as_list.stderr
    broken = cli("evaluate", "run", "-p", str(policy_dir), "-c", "-", input="{oops")
    assert broken.exit_code == 2


def test_evaluate_missing_option_is_a_usage_error(cli: Invoke) -> None:
    result = cli("evaluate", "run")
    assert result.exit_code == 2
    assert "--context" in result.stderr


# --- evaluate batch -------------------------------------------------------------------


def test_batch_streams_decisions_in_order(cli: Invoke, policy_dir: Path, tmp_path: Path) -> None:
    lines = [
        {"context": CTX_OK, "request_id": "a"},
        {"context": CTX_SQL, "request_id": "b"},
        {"context": CTX_FREE, "request_id": "c", "trace": True},
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    result = cli("evaluate", "batch", "-p", str(policy_dir), str(path))
    assert result.exit_code == 1  # one request was denied
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["request_id"] for d in out] == ["a", "b", "c"]
    assert [d["decision"] for d in out] == ["allow", "deny", "modify"]
    assert out[2]["trace"]
    assert out[0]["trace"] is None
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_batch_malformed_line_keeps_its_place(cli: Invoke, policy_dir: Path) -> None:
    text = json.dumps({"context": CTX_OK}) + "\nnot json\n" + json.dumps({"ctx": {}}) + "\n"
    result = cli("evaluate", "batch", "-p", str(policy_dir), "-", input=text)
    assert result.exit_code == 2
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["decision"] == "allow"
    assert out[1]["line"] == 2
    assert "not an evaluate request" in out[1]["error"]
    assert out[2]["line"] == 3


def test_batch_unknown_policy_gets_its_own_error_entry(cli: Invoke, policy_dir: Path) -> None:
    """Regression (issue 13): one unknown policy id must not fail the whole batch."""
    text = "".join(
        json.dumps(x) + "\n"
        for x in [
            {"context": CTX_OK, "request_id": "a"},
            {"context": CTX_OK, "policies": ["nope"], "request_id": "b"},
            {"context": CTX_SQL, "request_id": "c"},
        ]
    )
    result = cli("evaluate", "batch", "-p", str(policy_dir), "-", input=text)
    assert result.exit_code == 2  # a line could not be decided
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[0]["decision"] == "allow"
    assert out[1] == {"line": 2, "error": out[1]["error"], "code": "policy_not_found"}
    assert "'nope'" in out[1]["error"]
    assert out[2]["decision"] == "deny"


def test_batch_all_allowed_exits_0(cli: Invoke, policy_dir: Path) -> None:
    text = "".join(json.dumps({"context": CTX_OK}) + "\n" for _ in range(450))
    result = cli("evaluate", "batch", "-p", str(policy_dir), "-", input=text)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 450


# --- policy list / get on files --------------------------------------------------------


def test_policy_list_and_get_on_files(cli: Invoke, policy_dir: Path) -> None:
    listed = cli("policy", "list", "-p", str(policy_dir))
    assert listed.exit_code == 0
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["ID", "NAMESPACE", "REVISION", "STATUS", "UPDATED_AT"]
    assert rows[1].split()[:2] == ["model-policy", "default"]
    assert rows[2].split()[:2] == ["security-policy", "prod"]
    tagged = cli("-o", "json", "policy", "list", "-p", str(policy_dir), "--tag", "security")
    assert [p["id"] for p in json.loads(tagged.stdout)["items"]] == ["security-policy"]
    got = cli("policy", "get", "-p", str(policy_dir), "security-policy")
    assert got.exit_code == 0
    assert "id: security-policy" in got.stdout
    missing = cli("policy", "get", "-p", str(policy_dir), "ghost")
    assert missing.exit_code == 2


def test_missing_policy_path_is_a_usage_error(cli: Invoke, policy_dir: Path) -> None:
    result = cli("policy", "list", "-p", str(policy_dir / "nope"))
    assert result.exit_code == 2


def test_a_backend_lost_mid_command_exits_4(
    cli: Invoke, policy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from policy_cli.backends.local import LocalBackend

    async def lost(self: LocalBackend, requests: object) -> list[dict[str, object]]:
        raise ConnectionResetError("peer went away")

    monkeypatch.setattr(LocalBackend, "evaluate", lost)
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    result = cli("evaluate", "run", "-p", str(policy_dir), "-c", ctx)
    assert result.exit_code == 4
    assert result.stderr.startswith("error: lost the connection to a backend: peer went away")


def test_policy_validate_without_a_server_validates_in_process(
    cli: Invoke, policy_dir: Path
) -> None:
    ok = cli("-o", "yaml", "policy", "validate", str(policy_dir / "security.yaml"))
    assert ok.exit_code == 0
    (outcome,) = YAML(typ="safe", pure=True).load(ok.stdout)
    assert outcome["valid"] is True
    assert outcome["policies"] == ["security-policy"]
    bad = cli("policy", "validate", "-", input="metadata: {id: p}\nrules: [{id: r}]\n")
    assert bad.exit_code == 3
    assert bad.stderr.startswith("<stdin>:2:")  # file:line:column of the rule without action
    assert ": error: " in bad.stderr


def test_policy_export_on_files_writes_what_validate_reads(
    cli: Invoke, policy_dir: Path, tmp_path: Path
) -> None:
    listed = json.loads(cli("-o", "json", "policy", "list", "--policies", str(policy_dir)).stdout)
    exported = cli("policy", "export", "--policies", str(policy_dir))
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout.count("\n---\n") == 1  # two documents
    checked = cli("validate", "-", input=exported.stdout)
    assert checked.stdout == "<stdin>: ok (model-policy, security-policy)\n"

    out = tmp_path / "out"
    assert (
        cli("policy", "export", "model-policy", "-p", str(policy_dir), "--dir", str(out)).exit_code
        == 0
    )
    assert [p.name for p in out.iterdir()] == ["model-policy.yaml"]
    reread = json.loads(cli("-o", "json", "policy", "list", "--policies", str(out)).stdout)
    (original,) = [p for p in listed["items"] if p["id"] == "model-policy"]
    assert reread["items"][0]["hash"] == original["hash"]
    assert reread["items"][0]["document"] == original["document"]


def test_policy_export_into_an_unwritable_place_is_a_usage_error(
    cli: Invoke, policy_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("policy", "export", "-p", str(policy_dir), "--dir", str(blocker / "sub"))
    assert result.exit_code == 2
    assert f"cannot write to {blocker / 'sub'}" in result.stderr


# --- evaluate response ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]


def test_evaluate_response_as_docs_cli_md_shows(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    doc = (ROOT / "docs" / "cli.md").read_text()
    command = next(
        line.removeprefix("$ llm-policy ")
        for line in doc.splitlines()
        if line.startswith("$ llm-policy evaluate response")
    )
    result = cli(*command.split())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "decision            warn" in lines
    assert "matched_rules       response-guard/redact-pii-in-answers" in lines
    assert 'modifications       {"response.text":"You can reach Ann at [REDACTED:email]."}' in lines


def test_evaluate_response_exits_1_on_deny(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = cli(
        "-o",
        "json",
        "evaluate",
        "response",
        "--policies",
        "examples/policies",
        "--context",
        "examples/contexts/allowed.json",
        "--response",
        "examples/responses/credential.json",
    )
    assert result.exit_code == 1
    decision = json.loads(result.stdout)
    assert decision["matched_rules"] == ["response-guard/no-credentials-in-answers"]


def test_evaluate_response_reads_one_of_its_files_from_stdin(cli: Invoke, tmp_path: Path) -> None:
    ctx = write_json(tmp_path / "ctx.json", CTX_OK)
    both = cli("evaluate", "response", "--policies", "x.yaml", "--context", "-", "--response", "-")
    assert both.exit_code == 2
    assert "only one of --context and --response" in both.stderr
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "metadata: {id: p}\nrules:\n  - {id: r, phase: response, "
        "condition: \"response.finish_reason == 'length'\", action: {decision: warn}}\n"
    )
    result = cli(
        "-o",
        "json",
        "evaluate",
        "response",
        "--policies",
        str(policy),
        "--context",
        ctx,
        "--response",
        "-",
        input='{"text": "cut", "finish_reason": "length"}',
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["matched_rules"] == ["p/r"]
