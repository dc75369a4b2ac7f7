"""``POST /v1/flows/{flowId}/migrations`` through a real ``trilha serve``: the dry run
counts and moves nothing, the move goes on in the new version at the next reply and is
in the execution's audit, bad bodies name their field, a viewer is refused, and another
institution finds acme's flow nowhere and never moves acme's executions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_api_conversation import bot_said, problem, until

from conftest import Api, module_api

V1 = {
    "id": "moving",
    "start": "name",
    "nodes": [
        {"id": "name", "type": "question", "text": "Your name?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Thanks {{name}}."},
    ],
}  # fmt: skip
V2 = {
    "id": "moving",
    "start": "who",
    "nodes": [
        {"id": "who", "type": "question", "text": "Who are you?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "v2: thanks {{name}} ({{plan}})."},
    ],
}  # fmt: skip
MIGRATIONS = "/v1/flows/moving/migrations"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "flow-moves") as api:
        yield api


@pytest.fixture
def api(server: Api) -> Api:
    return server.tenant()


def _start(client: httpx.Client, conversation: str) -> str:
    body = {"flowId": "moving", "conversationId": conversation, "contactId": f"c-{conversation}"}
    started = client.post("/v1/executions", json=body)
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    until(lambda: bot_said(client, execution_id, "Your name?"), what="the question")
    return execution_id


def _execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
    return answer


def test_moving_executions_over_http_with_tenancy(api: Api) -> None:
    """Dry run, then the move; beta (own flow of the same name or not) never reaches
    acme's; a viewer gets 403; bad bodies are 422 naming the field."""
    body = {"fromVersion": 1, "toVersion": 2, "nodeMap": {"name": "who"}}
    with (
        api.client("acme_operator") as acme,
        api.client("beta_operator") as beta,
        api.client("acme_viewer") as viewer,
    ):
        assert acme.put("/v1/flows/moving", json=V1).status_code == 201
        execution_id = _start(acme, "conv-move")
        assert acme.put("/v1/flows/moving", json=V2).status_code == 201

        problem(beta.post(MIGRATIONS, json=body), 404)
        problem(viewer.post(MIGRATIONS, json=body), 403)
        for bad, field in (
            ({**body, "toVersion": 1}, "body.toVersion"),
            ({**body, "fromVersion": 9}, "body.fromVersion"),
            ({**body, "nodeMap": {"name": "nowhere"}}, "body.nodeMap.name"),
            ({**body, "filter": {"status": "sleeping"}}, "filter"),
            ({**body, "cursor": "not-ours"}, "body.cursor"),
            ({**body, "nodeMap": {f"n{i}": "who" for i in range(1_001)}}, "body.nodeMap"),
            ({**body, "filter": {"flowId": "other"}}, "body.filter.flowId"),
        ):
            errors = problem(acme.post(MIGRATIONS, json=bad), 422)["errors"]
            assert any(field in e["field"] for e in errors), (field, errors)

        dry = acme.post(MIGRATIONS, json=body | {"dryRun": True})
        assert dry.status_code == 200, dry.text
        assert dry.json() == {
            "flowId": "moving",
            "dryRun": True,
            "fromVersion": 1,
            "toVersion": 2,
            "total": 1,
            "movable": 1,
            "nodes": [
                {"nodeId": "name", "count": 1, "counterpart": "who", "missingVariables": ["plan"]}
            ],
            "skipped": [],
            "skippedTotal": 0,
            "nextCursor": None,
        }
        assert _execution(acme, execution_id)["flowVersion"] == 1

        # beta's own flow of that name, two versions: its move sees none of acme's
        assert beta.put("/v1/flows/moving", json=V1).status_code == 201
        assert beta.put("/v1/flows/moving", json=V2).status_code == 201
        theirs = beta.post(MIGRATIONS, json=body)
        assert theirs.status_code == 200, theirs.text
        assert (theirs.json()["total"], theirs.json()["moved"]) == (0, 0)
        assert _execution(acme, execution_id)["flowVersion"] == 1

        done = acme.post(MIGRATIONS, json=body | {"reason": "the new greeting"})
        assert done.status_code == 200, done.text
        assert {k: done.json()[k] for k in ("dryRun", "moved", "skipped", "skippedTotal")} == {
            "dryRun": False,
            "moved": 1,
            "skipped": [],
            "skippedTotal": 0,
        }
        moved = _execution(acme, execution_id)
        assert (moved["flowVersion"], moved["status"]) == (2, "waiting_input")
        audit = acme.get(f"/v1/executions/{execution_id}/history").json()["audit"]
        (entry,) = [a for a in audit if a["operation"] == "migrated"]
        assert entry["reason"] == "the new greeting" and entry["actor"].startswith("key:")
        assert entry["details"] | {"fromNode": "name", "toNode": "who"} == entry["details"]
        assert (entry["details"]["fromVersion"], entry["details"]["toVersion"]) == (1, 2)

        reply = {"messageId": "m-1", "contactId": "c-conv-move", "text": "Ana"}
        sent = acme.post("/v1/conversations/conv-move/messages", json=reply)
        assert sent.status_code == 202, sent.text
        until(lambda: bot_said(acme, execution_id, "v2: thanks Ana"), what="v2's goodbye")
