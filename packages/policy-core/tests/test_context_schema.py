"""Spec 6: warnings for paths a configured context schema does not define."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from policy_core import ContextSchema, load_policies, validate_policy_text
from policy_core.language import ContextSchemaError
from policy_core.language.source import SourceText

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_SCHEMA = ROOT / "examples" / "context.schema.json"


def warnings_of(text: str, schema: Any) -> list[str]:
    report = validate_policy_text(text, file="p.yaml", context_schema=ContextSchema(schema))
    return [f"{w.line}:{w.column}: {w.message}" for w in report.warnings]


def defines(schema: Any, *segments: str | int) -> bool:
    return ContextSchema(schema).defines(tuple(segments))


# --- the example schema --------------------------------------------------------------


def test_the_example_schema_covers_every_example_and_reference_policy() -> None:
    schema = ContextSchema.load(EXAMPLE_SCHEMA)
    files = [
        *sorted((ROOT / "examples" / "policies").glob("*.yaml")),
        ROOT / "bench" / "reference_policies.yaml",
    ]
    for file in files:
        report = validate_policy_text(file.read_text(), file=str(file), context_schema=schema)
        assert [w.message for w in report.warnings if "context schema" in w.message] == [], file


def test_the_example_contexts_fit_the_example_schema_paths() -> None:
    """Every leaf path of the example contexts is defined (the schema is not made up)."""
    schema = ContextSchema.load(EXAMPLE_SCHEMA)

    def leaves(value: Any, prefix: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in leaves(v, (*prefix, k))]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in leaves(v, (*prefix, i))]
        return [prefix]

    for file in sorted((ROOT / "examples" / "contexts").glob("*.json")):
        for path in leaves(json.loads(file.read_text()), ()):
            assert schema.defines(path), (file.name, path)


# --- what the warning names, and where -------------------------------------------------

POLICY = """\
metadata: {id: gate}
scope: "projekt.environment == 'production'"
exceptions:
  - id: vip
    condition: "user.vip == true"
rules:
  - id: typo
    condition: "llm.modle == 'gpt-4o' && llm.estimated_cost > 1 && llm.model == 'x'"
    action: {decision: deny, reason: "denied for {{ user.naem }}"}
  - id: cap
    condition: "llm.max_tokens > 10"
    action: {decision: modify, modifications: {llm.max_tokenz: 10}}
"""


def test_each_unknown_path_is_one_warning_at_its_rule() -> None:
    schema = json.loads(EXAMPLE_SCHEMA.read_text())
    assert warnings_of(POLICY, schema) == [
        "1:16: gate: exception vip reads user.vip, which the context schema does not define",
        "1:16: gate: scope reads projekt.environment, which the context schema does not define",
        "7:9: gate: rule typo reads llm.modle, which the context schema does not define",
        "7:9: gate: rule typo's reason reads user.naem, which the context schema does not define",
        "10:9: gate: rule cap modifies llm.max_tokenz, which the context schema does not define",
    ]


def test_without_a_schema_there_is_no_such_warning() -> None:
    report = validate_policy_text(POLICY, file="p.yaml")
    assert not [w for w in report.warnings if "context schema" in w.message]


def test_derived_facts_are_always_defined() -> None:
    text = (
        "metadata: {id: p}\nrules:\n  - id: r\n    condition: 'llm.estimated_tokens > 1 "
        "|| llm.contains_pii || size(llm.pii_types) > 0'\n    action: {decision: deny}\n"
    )
    assert (
        warnings_of(
            text, {"type": "object", "properties": {"llm": {"type": "object", "properties": {}}}}
        )
        == []
    )


def test_a_path_used_twice_warns_once() -> None:
    text = (
        "metadata: {id: p}\nrules:\n  - id: a\n    condition: 'x.y == 1'\n    action: {decision: deny}\n"
        "  - id: b\n    condition: 'x.y == 2'\n    action: {decision: deny}\n"
    )
    assert len(warnings_of(text, {"properties": {}})) == 1


def test_warnings_do_not_make_the_text_invalid() -> None:
    report = validate_policy_text(
        POLICY, file="p.yaml", context_schema=ContextSchema({"properties": {}})
    )
    assert [p.id for p in report.policies] == ["gate"]
    assert all(w.severity == "warning" for w in report.warnings)


# --- schema semantics ------------------------------------------------------------------


def test_listed_properties_close_an_object() -> None:
    schema = {
        "type": "object",
        "properties": {"llm": {"type": "object", "properties": {"model": {}}}},
    }
    assert defines(schema, "llm", "model")
    assert not defines(schema, "llm", "modle")
    assert not defines(schema, "user")


def test_additional_properties_open_it_again() -> None:
    assert defines({"properties": {"a": {}}, "additionalProperties": True}, "zzz", "deep")
    closed_below = {
        "properties": {},
        "additionalProperties": {"type": "object", "properties": {"k": {}}},
    }
    assert defines(closed_below, "anything", "k")
    assert not defines(closed_below, "anything", "j")
    assert not defines({"properties": {}, "additionalProperties": False}, "a")


def test_pattern_properties_match_keys() -> None:
    schema = {"properties": {}, "patternProperties": {"^x-": {"type": "string"}}}
    assert defines(schema, "x-trace")
    assert not defines(schema, "trace")
    assert not defines(schema, "x-trace", "below")  # a string has nothing below it


def test_free_form_objects_and_empty_schemas_accept_anything() -> None:
    assert defines({"type": "object"}, "a", "b", 3, "c")
    assert defines({}, "a")
    assert defines(True, "a")
    assert not defines(False, "a")


def test_scalars_have_nothing_below_them() -> None:
    schema = {"properties": {"prompt": {"type": "string"}, "n": {"type": ["integer", "null"]}}}
    assert defines(schema, "prompt")
    assert not defines(schema, "prompt", "length")
    assert not defines(schema, "n", 0)


def test_arrays_items_and_prefix_items() -> None:
    schema = {
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"properties": {"k": {}}}],
                "items": False,
            },
            "any": {"type": "array"},
        }
    }
    assert defines(schema, "tags", 5)
    assert not defines(schema, "tags", "name")  # a member of a list does not exist
    assert defines(schema, "pair", 1, "k")
    assert not defines(schema, "pair", 2)
    assert defines(schema, "any", 0, "whatever")


def test_any_branch_of_any_of_defines_a_path() -> None:
    schema = {
        "properties": {
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"properties": {"text": {}}}},
                ]
            }
        }
    }
    assert defines(schema, "content", 0, "text")
    assert not defines(schema, "content", 0, "image")


def test_local_refs_are_followed() -> None:
    schema = {
        "$defs": {
            "user": {
                "type": "object",
                "properties": {"id": {}, "manager": {"$ref": "#/$defs/user"}},
            }
        },
        "properties": {"user": {"$ref": "#/$defs/user"}},
    }
    assert defines(schema, "user", "manager", "manager", "id")
    assert not defines(schema, "user", "manager", "name")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, r"only local \$ref"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "points nowhere"),
        (
            {"$defs": {"x": {"$ref": "#/$defs/x"}}, "properties": {"a": {"$ref": "#/$defs/x"}}},
            "cyclic",
        ),
    ],
)
def test_unusable_refs_are_errors_that_say_why(schema: Any, message: str) -> None:
    with pytest.raises(ContextSchemaError, match=message):
        ContextSchema(schema).defines(("a", "b"))


def test_a_schema_must_be_an_object() -> None:
    with pytest.raises(ContextSchemaError, match="JSON object"):
        ContextSchema([1, 2])


def test_load_reads_json_and_yaml_and_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"properties": {"a": {}}}')
    (tmp_path / "s.yaml").write_text("properties:\n  a: {}\n")
    (tmp_path / "bad.json").write_text("{nope")
    assert ContextSchema.load(tmp_path / "s.json").defines(("a",))
    assert not ContextSchema.load(tmp_path / "s.yaml").defines(("b",))
    with pytest.raises(ContextSchemaError, match=r"bad\.json: not valid JSON or YAML"):
        ContextSchema.load(tmp_path / "bad.json")
    with pytest.raises(ContextSchemaError, match="cannot read"):
        ContextSchema.load(tmp_path / "missing.json")


def test_policy_service_validation_uses_its_schema() -> None:
    from policy_core.memory import MemoryPolicyStore, SystemClock
    from policy_core.services import EngineHolder, PolicyService

    store = MemoryPolicyStore(SystemClock())
    service = PolicyService(
        reader=store,
        writer=store,
        holder=EngineHolder(),
        context_schema=ContextSchema.load(EXAMPLE_SCHEMA),
    )
    report = service.validate(POLICY)
    assert any("llm.modle" in w.message for w in report.warnings)


def test_the_loaded_policies_are_unaffected() -> None:
    assert load_policies(POLICY)[0].id == "gate"
    assert SourceText(POLICY, "p.yaml").file == "p.yaml"
