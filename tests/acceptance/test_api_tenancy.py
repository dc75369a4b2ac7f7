"""Tenant isolation on every route: a walk over the served OpenAPI document with a
key of another institution. Whatever it asks about institution acme's execution,
flow or conversation is absent (404, never 403 or 2xx), listings and streams show
none of it, and afterwards acme's execution is exactly as it was."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import httpx

from conftest import Api
from trilha.api.app import UNKEYED
from trilha.store import open_store

SECRET_FLOW = {
    "id": "secret-flow",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Your code?", "variable": "code", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}

#: a well-formed body per operation, so that validation passes and the tenancy check
#: is what answers; operations that take no body get none
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/v1/executions"): {
        "flowId": "secret-flow",
        "institutionId": "acme",
        "conversationId": "acme-conv",
        "contactId": "k",
        "variables": {},
    },
    ("post", "/v1/conversations/{conversationId}/messages"): {
        "messageId": "intruder-1",
        "contactId": "k",
        "text": "let me in",
    },
    ("post", "/v1/conversations/{conversationId}/statuses"): {
        "idempotencyKey": "intruder-key",
        "status": "read",
        "at": 1767225600,
    },
    ("post", "/v1/conversations/{conversationId}/agent-messages"): {
        "messageId": "intruder-2",
        "agentId": "mallory",
        "text": "let me speak",
    },
    ("post", "/v1/conversations/{conversationId}/handback"): {"nodeId": "end"},
    ("post", "/v1/executions/{executionId}/advance"): {"toNodeId": "end"},
    ("post", "/v1/executions/{executionId}/signals/{event}"): {
        "signalId": "intruder-signal",
        "payload": {"paid": True},
    },
    ("patch", "/v1/executions/{executionId}/variables"): {"set": {"code": "stolen"}},
    ("post", "/v1/flows/{flowId}/migrations"): {"fromVersion": 1, "toVersion": 2},
    # a dry run over acme's conversation: beta's own executions only, so none
    ("post", "/v1/executions/bulk"): {
        "action": "cancel",
        "filter": {"conversationId": "acme-conv"},
        "dryRun": True,
    },
}
#: publishing under a name creates the caller's own flow: it cannot touch acme's (the
#: walk checks acme's flow is unchanged afterwards)
CREATES_OWN = {
    ("put", "/v1/flows/{flowId}"),
    # a key's own institution's triggers (acme's are 404 by ?institutionId=: test_triggers_api)
    ("put", "/v1/triggers"),
    ("delete", "/v1/triggers"),
    ("put", "/v1/calendars/{name}"),
}
#: an admin key's only (erasing a contact): any other key is refused (403) before the
#: contact is looked for, so nothing of acme's is told; acme's execution stays as it was
ADMIN_ONLY = {("delete", "/v1/contacts/{contactId}")}
#: listings and streams: they answer, but must not mention acme's things
#: answer 200 with the caller's own things (or the platform's: alerts), never acme's
LISTINGS = {
    ("get", "/v1/executions"),
    ("get", "/v1/executions/counts"),
    ("get", "/v1/flows"),
    ("get", "/v1/events"),
    ("get", "/v1/me"),
    ("get", "/v1/alerts"),
    ("get", "/v1/errors"),
    ("get", "/v1/dependencies"),
    ("get", "/v1/outbox"),
    ("get", "/v1/triggers"),
    ("get", "/v1/calendars"),
    ("post", "/v1/executions/bulk"),
    ("get", "/v1/executions/bulk"),
}
#: acme's calendar: beta finds it nowhere
SECRET_CALENDAR = {"timeZone": "America/Sao_Paulo", "hours": {"mon": [["08:00", "12:00"]]}}


def _acme_world(api: Api) -> dict[str, str]:
    with api.client("acme_operator") as acme:
        assert acme.put("/v1/flows/secret-flow", json=SECRET_FLOW).status_code == 201
        hours = acme.put("/v1/calendars/secret-hours", json=SECRET_CALENDAR)
        assert hours.status_code == 201, hours.text
        started = acme.post("/v1/executions", json=BODIES[("post", "/v1/executions")])
        assert started.status_code == 201, started.text
        execution_id = started.json()["executionId"]
        _until_waiting(acme, execution_id)  # the worker asks the question
        bulk = {"action": "pause", "filter": {"conversationId": "nobody"}}
        job = acme.post("/v1/executions/bulk", json=bulk)  # acme's job: it acts on none
        assert job.status_code == 202, job.text
    return {
        "executionId": execution_id,
        "flowId": "secret-flow",
        "conversationId": "acme-conv",
        "id": str(_message_id(api, execution_id)),  # /v1/outbox/{id}: acme's question
        "event": "payment.confirmed",  # /v1/executions/{executionId}/signals/{event}
        "name": "secret-hours",  # /v1/calendars/{name}
        "jobId": job.json()["jobId"],  # /v1/executions/bulk/{jobId}
        "contactId": "k",  # DELETE /v1/contacts/{contactId}
    }


def _until_waiting(client: httpx.Client, execution_id: str) -> None:
    deadline = time.monotonic() + 30
    while client.get(f"/v1/executions/{execution_id}").json()["status"] != "waiting_input":
        assert time.monotonic() < deadline, f"{execution_id} never asked its question"
        time.sleep(0.05)


def _beta_world(api: Api) -> str:
    """beta's own execution: what beta's event stream must show (so a stream that shows
    nothing at all fails the walk instead of passing it)."""
    with api.client("beta_operator") as beta:
        flow = {**SECRET_FLOW, "id": "beta-flow"}
        assert beta.put("/v1/flows/beta-flow", json=flow).status_code == 201
        body = {**BODIES[("post", "/v1/executions")], "flowId": "beta-flow"}
        started = beta.post(
            "/v1/executions", json={**body, "institutionId": "beta", "conversationId": "b"}
        )
        assert started.status_code == 201, started.text
        execution_id: str = started.json()["executionId"]
        _until_waiting(beta, execution_id)
    return execution_id


def _message_id(api: Api, execution_id: str) -> int:
    """The outbox id of the execution's first message, read from the store itself (no
    route tells another tenant's ids: that is the point)."""

    async def read() -> int:
        store = open_store(api.store)
        await store.open()
        try:
            (first, *_) = await store.outbox_for(execution_id)
        finally:
            await store.close()
        assert first.id is not None
        return first.id

    return asyncio.run(read())


GHOSTS = {
    "executionId": "0" * 32,
    "flowId": "no-such-flow",
    "conversationId": "no-such-conv",
    "id": "987654321",
    "event": "payment.confirmed",
    "name": "no-such-calendar",
    "jobId": "bulk-" + "0" * 32,
    "contactId": "no-such-contact",
}


def _neutral(text: str, ids: dict[str, str]) -> str:
    """The answer with the ids the caller itself sent replaced by their names."""
    for name, value in ids.items():  # whole tokens only: a message id may be "1" (as in /v1)
        text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", name, text)
    return text


def _snapshot(api: Api, execution_id: str) -> dict[str, Any]:
    with api.client("acme_operator") as acme:
        return {
            "execution": acme.get(f"/v1/executions/{execution_id}").json(),
            "history": acme.get(f"/v1/executions/{execution_id}/history").json(),
            "flow": acme.get("/v1/flows/secret-flow").json(),
            "calendar": acme.get("/v1/calendars/secret-hours").json(),
        }


def _call(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    if path.endswith("/events"):
        # a stream, replayed from its start (the tenant's would start now), read until
        # nothing more comes for a while: a live stream never ends. A stream that does
        # not answer at all fails here (ReadTimeout), never passes as an empty 200
        timeout = httpx.Timeout(10.0, read=3.0)
        params = {"lastEventId": "0"}
        with client.stream(method.upper(), path, params=params, timeout=timeout) as stream:
            if stream.status_code != 200:
                stream.read()
                return stream
            text, deadline = "", time.monotonic() + 15  # pings would keep it going
            with contextlib.suppress(httpx.ReadTimeout):
                for chunk in stream.iter_text():
                    text += chunk
                    if time.monotonic() > deadline:
                        break
            return httpx.Response(200, text=text)
    kwargs = {"json": body} if body is not None else {}
    return client.request(method.upper(), path, **kwargs)


def test_a_foreign_key_finds_nothing_of_another_tenant(api: Api) -> None:
    acme = _acme_world(api)
    betas = _beta_world(api)
    before = _snapshot(api, acme["executionId"])
    with httpx.Client(base_url=api.url) as anonymous:
        document = anonymous.get("/openapi.json").json()
    walked: list[str] = []
    with api.client("beta_operator") as beta, api.client("acme_viewer") as viewer:
        for template, operations in document["paths"].items():
            if not template.startswith("/v1") or template in UNKEYED:
                continue  # a channel's webhook takes no key: it is no tenant's
            path = template
            for name, value in acme.items():
                path = path.replace("{" + name + "}", value)
            assert "{" not in path, f"the walk does not know a parameter of {template}"
            for method in operations:
                key = (method, template)
                if key in CREATES_OWN:
                    continue
                body = BODIES.get(key, {} if method != "get" else None)
                answer = _call(beta, method, path, body)
                walked.append(f"{method.upper()} {template} -> {answer.status_code}")
                if key in LISTINGS:
                    assert answer.status_code == 200, (key, answer.text)
                    text = answer.text
                    if template == "/v1/events":  # it streams, beta's own lines included
                        assert betas in text, text[:500]
                    assert acme["executionId"] not in text, (key, text[:500])
                    assert "acme-conv" not in text and "secret-flow" not in text, key
                    assert "secret-hours" not in text, key
                    if template == "/v1/executions/counts":  # beta's own, not acme's
                        assert answer.json()["total"] == 1, answer.text
                    if key == ("post", "/v1/executions/bulk"):  # none of acme's counted
                        assert answer.json()["total"] == 0, answer.text
                    if key == ("get", "/v1/executions/bulk"):  # beta has started none
                        assert answer.json()["jobs"] == [], answer.text
                elif key in ADMIN_ONLY:
                    assert answer.status_code == 403, (key, answer.status_code, answer.text)
                else:
                    assert answer.status_code == 404, (key, answer.status_code, answer.text)
                    # indistinguishable from an id that exists nowhere
                    ghost_path = template  # by parameter: acme's message id may be "1"
                    for name, value in GHOSTS.items():
                        ghost_path = ghost_path.replace("{" + name + "}", value)
                    ghost = _call(beta, method, ghost_path, BODIES.get(key, {}))
                    assert ghost.status_code == 404, (key, ghost.text)
                    assert _neutral(answer.text, acme) == _neutral(ghost.text, GHOSTS), key
                # a viewer of acme itself may read, never change (403), never 5xx
                if method != "get":
                    own = _call(viewer, method, path, BODIES.get(key, {}))
                    assert own.status_code == 403, (key, own.status_code, own.text)
    assert len(walked) >= 15, walked  # every route of issue 5 was visited
    after = _snapshot(api, acme["executionId"])
    assert after["execution"]["status"] == before["execution"]["status"]
    assert after["execution"]["variables"] == before["execution"]["variables"]
    assert after["history"] == before["history"]
    assert after["flow"]["version"] == before["flow"]["version"]
    assert after["calendar"]["definition"] == before["calendar"]["definition"]
    assert after["calendar"]["updatedAt"] == before["calendar"]["updatedAt"]
    with api.client("acme_operator") as acme_client:
        transcript = acme_client.get(f"/v1/executions/{acme['executionId']}/transcript").json()
    assert "let me in" not in json.dumps(transcript)
