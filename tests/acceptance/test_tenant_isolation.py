"""Tenant isolation through a real ``trilha serve``, the way the review found the holes:
an institution's operator key publishing flows that reach for another institution's
flows and the platform's dependencies (issue 14, findings 1 and 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
from test_api_conversation import problem, start_body, until

from conftest import Cli, start_api
from hostile_flows import LOOP, REGEX, VALUES, lookup

SECRET = {
    "id": "secret",
    "start": "leak",
    "settings": {"fallback": {"escalateToHuman": False}},
    "nodes": [
        {"id": "leak", "type": "message", "text": "beta's secret text", "next": "deep"},
        {"id": "deep", "type": "message", "text": "beta's deep node", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}


def _jumping(target: str, **jump: Any) -> dict[str, Any]:
    return {
        "id": "main",
        "start": "go",
        "nodes": [
            {"id": "go", "type": "jump", "flowId": target, **jump},
        ],
    }


def _bot_texts(client: Any, execution_id: str) -> list[str]:
    transcript = client.get(f"/v1/executions/{execution_id}/transcript").json()["transcript"]
    return [t["text"] for t in transcript if t["from"] == "bot"]


def test_an_institution_cannot_enter_another_institutions_flow(cli: Cli, tmp_path: Path) -> None:
    """Finding 1: a jump or a fallback flow naming beta's flow is refused at publish (422,
    naming the field), and a bare name never resolves to beta's flow at run time."""
    api = start_api(cli, tmp_path)
    with api.client("beta_operator") as beta, api.client("acme_operator") as acme:
        assert beta.put("/v1/flows/secret", json=SECRET).status_code == 201
        refused = problem(acme.put("/v1/flows/main", json=_jumping("beta/secret")), 422)
        assert [e["field"] for e in refused["errors"]] == ["nodes[0].flowId"]
        assert "another institution" in refused["errors"][0]["message"]
        deep = problem(acme.put("/v1/flows/main", json=_jumping("beta/secret", nodeId="deep")), 422)
        assert deep["errors"][0]["field"] == "nodes[0].flowId"
        fallback = {
            "id": "main",
            "start": "end",
            "settings": {"fallback": {"fallbackFlowId": "beta/secret"}},
            "nodes": [{"id": "end", "type": "end"}],
        }
        refused = problem(acme.put("/v1/flows/main", json=fallback), 422)
        assert refused["errors"][0]["field"] == "settings.fallback.fallbackFlowId"

        # by its bare name, 'secret' is acme's own flow or a shared one: beta's never
        published = acme.put("/v1/flows/main", json=_jumping("secret"))
        assert published.status_code == 201
        assert published.json()["warnings"] == [
            "nodes[0].flowId: warning: no flow 'secret' exists for institution 'acme' (yet)"
        ]
        started = acme.post("/v1/executions", json=start_body("c1", flow="main"))
        assert started.status_code == 201, started.text
        eid = started.json()["executionId"]
        ended = until(
            lambda: acme.get(f"/v1/executions/{eid}").json()["status"] in ("failed", "completed"),
            what="the execution to end",
        )
        assert ended
        assert not any("beta" in text for text in _bot_texts(acme, eid))
        steps = acme.get(f"/v1/executions/{eid}/steps").json()["steps"]
        assert all(step.get("flowId", "acme/main") != "beta/secret" for step in steps)
        assert steps[0]["error"]["kind"] == "configuration"  # a flow never published


def test_dependencies_serve_only_the_institutions_they_name(
    cli: Cli, tmp_path: Path, http_server: Any
) -> None:
    """Finding 2: a dependency with secret headers serves only the institutions it
    lists; another's flow is refused at publish, and a shared flow running for an
    institution not listed never sends the secret. serve warns about an unowned one."""
    http_server.route("GET", "/me", body={"name": "Beta Corp"})
    flows = tmp_path / "flows"
    flows.mkdir()
    shared = lookup("hello {{me.name}}")
    (flows / "lookup.json").write_text(json.dumps(shared), encoding="utf-8")
    config = f"""
[channel]
kind = "memory"

[dependencies.crm]
base_url = "{http_server.url}"
headers = {{ Authorization = "Bearer beta-secret" }}
institutions = ["beta"]

[dependencies.open]
base_url = "{http_server.url}"
institutions = ["*"]

[dependencies.internal]
base_url = "{http_server.url}"
headers = {{ Authorization = "Bearer platform-secret" }}
"""
    api = start_api(cli, tmp_path, "--flows", str(flows), config=config)
    own = shared | {"id": "mine"}
    with api.client("acme_operator") as acme, api.client("beta_operator") as beta:
        for dependency in ("crm", "internal", "undeclared"):
            flow = json.loads(json.dumps(own))
            flow["nodes"][0]["dependency"] = dependency
            refused = problem(acme.put("/v1/flows/mine", json=flow), 422)
            assert [e["field"] for e in refused["errors"]] == ["nodes[0].dependency"]
        flow = json.loads(json.dumps(own))
        flow["nodes"][0]["dependency"] = "open"
        assert acme.put("/v1/flows/mine", json=flow).status_code == 201
        assert beta.put("/v1/flows/mine", json=own).status_code == 201

        # the shared flow acts as the institution it runs for
        for client, conversation, expected in ((acme, "a", "refused"), (beta, "b", "hello Beta")):
            eid = client.post("/v1/executions", json=start_body(conversation, flow="lookup"))
            eid = eid.json()["executionId"]
            until(
                lambda c=client, e=eid: (
                    c.get(f"/v1/executions/{e}").json()["status"] == "completed"
                ),
                what="the lookup to end",
            )
            assert any(expected in text for text in _bot_texts(client, eid))
    secrets = [r["headers"].get("Authorization") for r in http_server.requests]
    assert secrets == ["Bearer beta-secret"]
    _, output = api.stop()
    warned = [json.loads(line) for line in output.splitlines() if "dependency.unowned" in line]
    assert [w["context"]["metadata"]["dependency"] for w in warned] == ["internal"]


def _ended(client: Any, execution_id: str) -> dict[str, Any]:
    """The execution once it has ended (or waits for input), read through the API."""

    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
        return body if body["status"] in ("completed", "failed", "waiting_input") else None

    found: dict[str, Any] = until(check, what=f"execution {execution_id} to settle")
    return found


def _failed_steps(client: Any, execution_id: str) -> list[dict[str, Any]]:
    steps = client.get(f"/v1/executions/{execution_id}/steps").json()["steps"]
    return [s for s in steps if s.get("error")]


def test_a_hostile_flow_fails_its_nodes_not_the_service(cli: Cli, tmp_path: Path) -> None:
    """Findings 4-6 and 10 as found, through one real trilha serve: a regex bomb with a
    31-character reply, a set node sharing one large string in nested lists, a chain of
    x*x, and a loop through a delay. Each ends in kind limit (or the invalid-answer
    path) within seconds, the server's memory and store stay small, and another
    institution's requests answer all along."""
    config = '[channel]\nkind = "memory"\n[engine]\nmax_steps_without_input = 200\n'
    api = start_api(cli, tmp_path, config=config)
    server = psutil.Process(api.process.pid)
    rss_before = server.memory_info().rss
    with api.client("acme_operator") as acme, api.client("beta_operator") as beta:
        for flow in (REGEX, VALUES, LOOP):
            assert acme.put(f"/v1/flows/{flow['id']}", json=flow).status_code == 201
        bomb = acme.post("/v1/executions", json=start_body("r", flow="regex")).json()
        _ended(acme, bomb["executionId"])
        sent = time.monotonic()
        reply = {"messageId": "m1", "contactId": "contact-r", "text": "a" * 31 + "!"}
        assert acme.post("/v1/conversations/r/messages", json=reply).status_code == 202
        until(lambda: _bot_texts(acme, bomb["executionId"])[-1:] == ["no"], what="the re-ask")
        regex_seconds = time.monotonic() - sent
        assert regex_seconds < 10  # Python's engine took 41 s on this reply

        made = acme.post("/v1/executions", json=start_body("v", flow="values", variables={"x": 99}))
        done = _ended(acme, made.json()["executionId"])
        assert done["status"] == "completed"
        failed = _failed_steps(acme, done["executionId"])
        assert [s["error"]["kind"] for s in failed] == ["limit", "limit"]
        assert "64 bits" in failed[1]["error"]["message"]

        looping = acme.post("/v1/executions", json=start_body("l", flow="loop")).json()
        ended = _ended(acme, looping["executionId"])
        assert ended["status"] == "failed"
        assert "max_steps_without_input" in ended["error"]["message"]

        assert beta.get("/v1/executions").status_code == 200
    assert server.memory_info().rss - rss_before < 200 * 2**20  # the attack took 4.9 GB
    store_bytes = sum(p.stat().st_size for p in tmp_path.glob("api.db*"))
    assert store_bytes < 50 * 2**20  # the attack grew SQLite by 8.5 GB
