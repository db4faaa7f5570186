"""Policy routes: bodies by Content-Type, ETag/If-Match, revisions, pagination, 4xx paths."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

P = "/api/v1/policies"
YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}

DOC = """\
metadata:
  id: ID
  name: A policy
  namespace: NS
  tags: [TAG]
rules:
  - id: big-requests
    name: Big requests
    condition: "llm.max_tokens > LIMIT"
    action: {decision: deny, reason: too many tokens}
"""


def doc(pid: str = "p1", limit: int = 1000, ns: str = "default", tag: str = "security") -> str:
    return DOC.replace("ID", pid).replace("LIMIT", str(limit)).replace("NS", ns).replace("TAG", tag)


def create(client: TestClient[Litestar], admin: dict[str, str], text: str) -> Any:
    return client.post(P, content=text, headers={**admin, **YAML})


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_create_from_yaml_gives_201_location_and_etag(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = create(client, admin, doc())
    assert r.status_code == 201
    assert r.headers["location"] == "/api/v1/policies/p1"
    assert r.headers["etag"] == '"p1:1"'
    body = r.json()
    assert body["id"] == "p1"
    assert body["revision"] == 1
    assert body["status"] == "active"
    assert body["namespace"] == "default"
    assert body["author"] == "alice"
    assert body["document"]["rules"][0]["id"] == "big-requests"
    assert set(body) >= {"id", "namespace", "revision", "status", "document", "created_at"}


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_create_from_json(
    client: TestClient[Litestar], admin: dict[str, str], content_type: str
) -> None:
    document = {
        "metadata": {"id": "pj", "name": "JSON policy"},
        "rules": [{"id": "r", "name": "r", "action": {"decision": "warn"}}],
    }
    r = client.post(
        P, content=json.dumps(document), headers={**admin, "Content-Type": content_type}
    )
    assert r.status_code == 201, r.text
    assert r.json()["document"]["metadata"]["id"] == "pj"


@pytest.mark.parametrize("content_type", ["application/x-yaml", "text/yaml"])
def test_create_accepts_every_yaml_type(
    client: TestClient[Litestar], admin: dict[str, str], content_type: str
) -> None:
    r = client.post(P, content=doc(), headers={**admin, "Content-Type": content_type})
    assert r.status_code == 201, r.text


def test_other_content_types_are_415(client: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = client.post(P, content=doc(), headers={**admin, "Content-Type": "text/plain"})
    problem(r, 415)


def test_malformed_json_is_400(client: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = client.post(P, content='{"metadata": ', headers={**admin, **JSON})
    assert "malformed JSON" in problem(r, 400)["detail"]


def test_malformed_yaml_is_400_with_a_position(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = create(client, admin, "metadata: {id: p1\nrules: [")
    body = problem(r, 400)
    assert body["errors"][0]["line"] >= 1


def test_invalid_document_is_422_with_line_and_column(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    text = doc().replace("    name: Big requests\n", "    name: Big requests\n    priorty: 3\n")
    body = problem(create(client, admin, text), 422)
    issue = body["errors"][0]
    assert issue["line"] == 9
    assert issue["column"] == 5
    assert "priorty" in issue["message"]
    assert set(issue) == {"path", "line", "column", "message"}


def test_duplicate_id_is_409(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    problem(create(seeded, admin, doc()), 409)


def test_body_over_the_limit_is_413(client: TestClient[Litestar], admin: dict[str, str]) -> None:
    text = doc() + "# " + "x" * 1_100_000 + "\n"
    problem(create(client, admin, text), 413)


def test_get_current_and_a_given_revision(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = seeded.put(
        f"{P}/p1", content=doc(limit=2000), headers={**admin, **YAML, "If-Match": '"p1:1"'}
    )
    assert r.status_code == 200
    assert r.headers["etag"] == '"p1:2"'
    current = seeded.get(f"{P}/p1", headers=admin)
    assert current.json()["revision"] == 2
    assert current.headers["etag"] == '"p1:2"'
    first = seeded.get(f"{P}/p1", params={"revision": 1}, headers=admin)
    assert first.json()["revision"] == 1
    assert first.headers["etag"] == '"p1:1"'
    assert "1000" in first.json()["document"]["rules"][0]["condition"]
    problem(seeded.get(f"{P}/p1", params={"revision": 9}, headers=admin), 404)


def test_accept_yaml_gives_the_document_as_yaml(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    create(client, admin, doc("py"))
    r = client.get(f"{P}/py", headers={**admin, "Accept": "application/yaml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/yaml")
    assert r.headers["etag"] == '"py:1"'
    assert r.text == doc("py")
    prefers_json = client.get(
        f"{P}/py", headers={**admin, "Accept": "application/json, application/yaml;q=0.5"}
    )
    assert prefers_json.headers["content-type"].startswith("application/json")


def test_accept_yaml_renders_a_json_submitted_document(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    document = {"metadata": {"id": "pj", "name": "J"}, "rules": []}
    client.post(P, content=json.dumps(document), headers={**admin, **JSON})
    r = client.get(f"{P}/pj", headers={**admin, "Accept": "text/yaml"})
    assert r.status_code == 200
    assert "metadata:" in r.text
    assert "id: pj" in r.text


def test_unknown_id_is_404(client: TestClient[Litestar], admin: dict[str, str]) -> None:
    body = problem(client.get(f"{P}/nope", headers=admin), 404)
    assert "nope" in body["detail"]


def test_put_without_if_match_is_428(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    problem(seeded.put(f"{P}/p1", content=doc(limit=5), headers={**admin, **YAML}), 428)


@pytest.mark.parametrize("tag", ['"p1:7"', 'W/"p1:1"', '"p2:1"', "garbage"])
def test_put_with_a_stale_or_foreign_etag_is_412(
    seeded: TestClient[Litestar], admin: dict[str, str], tag: str
) -> None:
    r = seeded.put(f"{P}/p1", content=doc(limit=5), headers={**admin, **YAML, "If-Match": tag})
    problem(r, 412)
    assert seeded.get(f"{P}/p1", headers=admin).json()["revision"] == 1


def test_put_with_star_or_a_list_holding_the_current_tag(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    h = {**admin, **YAML}
    r = seeded.put(f"{P}/p1", content=doc(limit=5), headers={**h, "If-Match": "*"})
    assert r.status_code == 200
    r = seeded.put(f"{P}/p1", content=doc(limit=6), headers={**h, "If-Match": '"p1:1", "p1:2"'})
    assert r.status_code == 200
    assert r.json()["revision"] == 3


def test_put_renaming_the_id_is_422(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = seeded.put(f"{P}/p1", content=doc("p2"), headers={**admin, **YAML, "If-Match": '"p1:1"'})
    problem(r, 422)


def test_put_on_unknown_id_is_404(client: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = client.put(f"{P}/zz", content=doc("zz"), headers={**admin, **YAML, "If-Match": '"zz:1"'})
    problem(r, 404)


def test_status_change_writes_a_revision(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = seeded.patch(f"{P}/p1/status", json={"status": "draft"}, headers=admin)
    assert r.status_code == 200
    assert r.json()["status"] == "draft"
    assert r.json()["revision"] == 2
    assert r.headers["etag"] == '"p1:2"'
    stale = seeded.patch(
        f"{P}/p1/status", json={"status": "active"}, headers={**admin, "If-Match": '"p1:1"'}
    )
    problem(stale, 412)
    problem(seeded.patch(f"{P}/p1/status", json={"status": "paused"}, headers=admin), 400)


def test_delete_is_soft_and_the_id_can_come_back(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    assert seeded.delete(f"{P}/p1", headers=admin).status_code == 204
    problem(seeded.get(f"{P}/p1", headers=admin), 404)
    problem(seeded.delete(f"{P}/p1", headers=admin), 404)
    # Revisions stay for audit, and numbering continues on re-creation.
    assert seeded.get(f"{P}/p1/revisions", headers=admin).json()["items"][0]["revision"] == 1
    again = create(seeded, admin, doc())
    assert again.status_code == 201
    assert again.json()["revision"] == 2


def test_delete_with_a_stale_if_match_is_412(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    problem(seeded.delete(f"{P}/p1", headers={**admin, "If-Match": '"p1:5"'}), 412)


def test_revisions_and_rollback(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    h = {**admin, **YAML}
    seeded.put(f"{P}/p1", content=doc(limit=2000), headers={**h, "If-Match": '"p1:1"'})
    r = seeded.post(f"{P}/p1/rollback", json={"revision": 1}, headers=admin)
    assert r.status_code == 200
    assert r.json()["revision"] == 3
    assert r.headers["etag"] == '"p1:3"'
    assert "1000" in r.json()["document"]["rules"][0]["condition"]
    items = seeded.get(f"{P}/p1/revisions", headers=admin).json()["items"]
    assert [i["revision"] for i in items] == [1, 2, 3]
    assert all(i["author"] == "alice" for i in items)
    assert set(items[0]) == {"revision", "author", "created_at", "hash", "summary"}
    assert items[2]["summary"].startswith("rollback to revision 1")
    problem(seeded.post(f"{P}/p1/rollback", json={"revision": 42}, headers=admin), 404)
    problem(seeded.post(f"{P}/p1/rollback", json={"revision": 0}, headers=admin), 400)
    problem(seeded.get(f"{P}/zz/revisions", headers=admin), 404)


def test_list_filters_and_cursor_pagination(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    for i in range(5):
        create(client, admin, doc(f"p{i}", ns="prod" if i % 2 else "dev", tag=f"t{i % 2}"))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(P, params=params, headers=admin).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["p0", "p1", "p2", "p3", "p4"]
    prod = client.get(P, params={"namespace": "prod"}, headers=admin).json()["items"]
    assert [p["id"] for p in prod] == ["p1", "p3"]
    tagged = client.get(P, params={"tag": "t0"}, headers=admin).json()["items"]
    assert [p["id"] for p in tagged] == ["p0", "p2", "p4"]
    active = client.get(P, params={"status": "draft"}, headers=admin).json()["items"]
    assert active == []


@pytest.mark.parametrize("cursor", ["not-a-cursor", "W10", "e30", "!!!"])
def test_a_forged_cursor_is_400(
    seeded: TestClient[Litestar], admin: dict[str, str], cursor: str
) -> None:
    problem(seeded.get(P, params={"cursor": cursor}, headers=admin), 400)
    problem(seeded.get(f"{P}/p1/revisions", params={"cursor": cursor}, headers=admin), 400)


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_limit_out_of_range_is_400(
    client: TestClient[Litestar], admin: dict[str, str], limit: int
) -> None:
    problem(client.get(P, params={"limit": limit}, headers=admin), 400)


def test_validate_reports_warnings_without_storing(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    text = doc().replace('"llm.max_tokens > 1000"', '"1 > 2"')
    r = client.post(f"{P}/validate", content=text, headers={**admin, **YAML})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True
    assert body["policies"] == ["p1"]
    assert body["warnings"]
    assert body["warnings"][0]["line"] == 7  # the rule that can never match
    problem(client.get(f"{P}/p1", headers=admin), 404)


def test_validate_invalid_is_422_like_create(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    text = doc().replace("llm.max_tokens > 1000", "llm.max_tokens >> 1000")
    body = problem(client.post(f"{P}/validate", content=text, headers={**admin, **YAML}), 422)
    assert body["errors"][0]["line"] == 9
    assert body["errors"][0]["column"] > 5


def test_validate_accepts_several_documents(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    text = doc("a") + "---\n" + doc("b")
    r = client.post(f"{P}/validate", content=text, headers={**admin, **YAML})
    assert r.json()["policies"] == ["a", "b"]
    # ...while create takes exactly one.
    problem(create(client, admin, text), 422)


def test_a_write_is_enforced_before_the_response(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    big = {"context": {"llm": {"max_tokens": 1500}}}
    assert seeded.post("/api/v1/evaluate", json=big, headers=admin).json()["decision"] == "deny"
    seeded.put(f"{P}/p1", content=doc(limit=2000), headers={**admin, **YAML, "If-Match": '"p1:1"'})
    assert seeded.post("/api/v1/evaluate", json=big, headers=admin).json()["decision"] == "allow"


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        ('metadata: {id: x, name: "\\ud83d"}\nrules: []\n', "application/yaml"),
        ('{"metadata": {"id": "x", "name": "\\ud83d"}, "rules": []}', "application/json"),
    ],
)
def test_lone_surrogate_escapes_are_400_not_500(
    client: TestClient[Litestar], admin: dict[str, str], text: str, content_type: str
) -> None:
    headers = {**admin, "Content-Type": content_type}
    problem(client.post(P, content=text, headers=headers), 400)
    problem(client.post(f"{P}/validate", content=text, headers=headers), 400)
    assert client.get(P, headers=admin).json()["items"] == []
