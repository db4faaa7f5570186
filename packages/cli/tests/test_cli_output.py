"""`-o/--output` is accepted before the subcommand and after it, on every command that prints."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import Result
from policy_cli.main import main
from ruamel.yaml import YAML

Invoke = Callable[..., Result]

# Commands that print nothing on stdout in a chosen format (servers, a JSONL stream, a
# confirmation on stderr): they do not take -o.
NOT_FORMATTED = {
    "serve",
    "grpc serve",
    "evaluate batch",
    "config check",
    "apikey revoke",
    "policy delete",
    "policy export",
}


def _leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _leaves(command, path + " ")
        else:
            yield path, command


def _takes_output(command: click.Command) -> bool:
    return any(p.name == "output" and "-o" in p.opts for p in command.params)


def test_every_printing_command_takes_output_and_the_others_do_not() -> None:
    leaves = dict(_leaves(main))
    assert leaves.keys() >= NOT_FORMATTED
    assert _takes_output(main)
    for path, command in leaves.items():
        assert _takes_output(command) == (path not in NOT_FORMATTED), path


@pytest.fixture
def suite(policy_dir: Path) -> Path:
    path = policy_dir.parent / "security.test.yaml"
    path.write_text(
        "policies: policies\ncases:\n"
        "  - name: SQL is denied\n"
        '    context: {llm: {prompt: "select a from b"}, user: {id: u1}}\n'
        "    expect: {decision: deny}\n"
    )
    return path


@pytest.mark.parametrize("placement", ["before", "after"])
def test_test_prints_json_wherever_o_stands(cli: Invoke, suite: Path, placement: str) -> None:
    args = ["test", str(suite)]
    result = cli(*(["-o", "json", *args] if placement == "before" else [*args, "-o", "json"]))
    assert result.exit_code == 0, result.stderr
    (case,) = json.loads(result.stdout)
    assert (case["name"], case["passed"]) == ("SQL is denied", True)


@pytest.mark.parametrize("placement", ["before", "after"])
def test_evaluate_stats_prints_json_wherever_o_stands(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, placement: str
) -> None:
    monkeypatch.setenv("LLM_POLICY_DEPLOYMENT", "memory")
    args = ["evaluate", "stats", "--days", "7"]
    result = cli(*(["-o", "json", *args] if placement == "before" else [*args, "-o", "json"]))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 0


def test_the_last_o_wins(cli: Invoke, policy_dir: Path) -> None:
    context = '{"llm": {"prompt": "hello"}}'
    run = ["evaluate", "run", "--policies", str(policy_dir), "-c", "-"]
    as_json = cli("-o", "yaml", *run, "--output", "json", input=context)
    assert json.loads(as_json.stdout)["decision"] == "allow"
    as_yaml = cli("-o", "json", *run, "-o", "yaml", input=context)
    assert YAML(typ="safe").load(as_yaml.stdout)["decision"] == "allow"
    as_table = cli(*run, input=context)
    assert as_table.stdout.startswith("decision")


def test_a_bad_format_after_the_subcommand_is_a_usage_error(cli: Invoke, policy_dir: Path) -> None:
    result = cli("policy", "list", "--policies", str(policy_dir), "-o", "xml")
    assert result.exit_code == 2
    assert "'xml' is not one of" in result.stderr
