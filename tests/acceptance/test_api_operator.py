"""Operator controls over HTTP against a real ``trilha serve``: pause, resume, cancel,
advance, retry and variables; audited, refused with 409 when the state does not allow
them, idempotent with a key, and closed to viewers and other institutions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, module_api, start_api
from trilha.api.routes.executions import ExecutionOut, HistoryOut

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem document (RFC 9457) with this status, no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert "Traceback" not in response.text
    return body


def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def start_body(conversation: str, flow: str = "onboarding") -> dict[str, Any]:
    return {"flowId": flow, "conversationId": conversation, "contactId": "contact-1"}


def status_of(client: httpx.Client, execution_id: str) -> str:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def bot_said(client: httpx.Client, execution_id: str, text: str) -> bool:
    transcript = client.get(f"/v1/executions/{execution_id}/transcript").json()["transcript"]
    return any(t["from"] == "bot" and text in t["text"] for t in transcript)


CALL = {
    "id": "call",
    "start": "lookup",
    "settings": {"fallback": {"timeoutSeconds": 3600}},
    "nodes": [
        {
            "id": "lookup",
            "type": "http",
            "dependency": "crm",
            "url": "/customer",
            "saveAs": "customer",
            "retry": {
                "maxAttempts": 3,
                "initialIntervalSeconds": 600,
                "maxIntervalSeconds": 600,
                "jitter": False,
            },
            "next": "hello",
        },
        {"id": "hello", "type": "end", "text": "Hello {{customer.name}}"},
    ],
}
BROKEN = {
    "id": "broken",
    "start": "lookup",
    "nodes": [
        {
            "id": "lookup",
            "type": "http",
            "dependency": "crm",
            "url": "/missing",
            "retry": {"maxAttempts": 1},
            "next": "bye",
        },
        {"id": "bye", "type": "end"},
    ],
}


class Crm:
    """A CRM on 127.0.0.1 that answers 503 until it is told it is back."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                crm.calls += 1
                ok = crm.up and self.path == "/customer"
                body = json.dumps({"name": "Ana"} if ok else {"error": "down"}).encode()
                self.send_response(200 if ok else (503 if self.path == "/customer" else 404))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[Crm]:
    server = Crm()
    yield server
    server.close()


def served_config(crm: Crm, institutions: list[str]) -> str:
    listed = ", ".join(f'"{name}"' for name in institutions)
    return (
        f'[channel]\nkind = "memory"\n[dependencies.crm]\nbase_url = "{crm.url}"\n'
        f"institutions = [{listed}]\n"
    )


#: the tenants the module's server is configured for: one per test (see ``served``)
TENANTS = [f"t{n}" for n in range(20)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Iterator[str]]]:
    """One server for the tests that leave the CRM down: the examples as shared flows,
    the ``crm`` dependency for every test's acme."""
    crm = Crm()
    try:
        config = served_config(crm, [f"acme-{tag}" for tag in TENANTS])
        flows = ("--flows", str(EXAMPLES))
        with module_api(tmp_path_factory, "operator", *flows, config=config) as api:
            yield api, iter(TENANTS)
    finally:
        crm.close()


@pytest.fixture
def served(server: tuple[Api, Iterator[str]]) -> Api:
    """The module's server, with institutions no other test uses."""
    api, tags = server
    return api.tenant(next(tags))


@pytest.fixture
def own_served(cli: Cli, tmp_path: Path, crm: Crm) -> Api:
    """The examples as shared flows, and a ``crm`` dependency the test controls."""
    return start_api(cli, tmp_path, "--flows", str(EXAMPLES), config=served_config(crm, ["acme"]))


def waiting_execution(client: httpx.Client, conversation: str) -> str:
    """An onboarding execution waiting for the contact's name."""
    started = client.post("/v1/executions", json=start_body(conversation))
    assert started.status_code == 201, started.text
    eid: str = started.json()["executionId"]
    until(lambda: status_of(client, eid) == "waiting_input", what="the first question")
    return eid


def transitions(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = client.get(f"/v1/executions/{execution_id}/history").json()[
        "history"
    ]
    return history


def test_pause_message_resume_advance_cancel(served: Api) -> None:
    """The controls end to end, each audited with the key as the actor and the reason."""
    key_id = served.keys["acme_operator"].split("_")[1]
    with served.client() as acme:
        eid = waiting_execution(acme, "conv-op")
        paused = acme.post(f"/v1/executions/{eid}/pause", json={"reason": "customer called"})
        assert paused.status_code == 200, paused.text
        view = ExecutionOut.model_validate(paused.json())
        assert view.status == "paused" and view.paused_from == "waiting_input"
        last = view.history[-1]
        assert (last.source, last.to, last.actor) == ("waiting_input", "paused", f"key:{key_id}")
        assert last.reason == "paused by an operator: customer called"

        message = {"messageId": "p-1", "contactId": "c", "text": "Maria Silva"}
        assert acme.post("/v1/conversations/conv-op/messages", json=message).status_code == 202
        assert status_of(acme, eid) == "paused"  # kept, not applied while paused
        problem(acme.post(f"/v1/executions/{eid}/pause"), 409)
        resumed = acme.post(f"/v1/executions/{eid}/resume")  # no body: no reason
        assert resumed.status_code == 200 and resumed.json()["status"] == "waiting_input"
        until(lambda: bot_said(acme, eid, "What is your CPF"), what="the reply applied")
        until(lambda: status_of(acme, eid) == "waiting_input", what="the next question")

        moved = acme.post(
            f"/v1/executions/{eid}/advance", json={"toNodeId": "ask_email", "reason": "skip"}
        )
        assert moved.status_code == 200 and moved.json()["currentNodeId"] == "ask_email"
        until(lambda: bot_said(acme, eid, "And your e-mail?"), what="the advanced-to question")
        bad = problem(acme.post(f"/v1/executions/{eid}/advance", json={"toNodeId": "nowhere"}), 422)
        assert "no node 'nowhere'" in bad["detail"]
        problem(acme.post(f"/v1/executions/{eid}/advance", json={"toNodeId": "a b"}), 422)

        cancelled = acme.post(f"/v1/executions/{eid}/cancel", json={"reason": "test over"})
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["outcome"] == "cancelled"
        for action in ("pause", "resume", "cancel", "advance", "retry"):
            refused = problem(acme.post(f"/v1/executions/{eid}/{action}"), 409)
            assert refused["currentStatus"] == "cancelled"
            assert refused["type"] == "urn:trilha:problem:illegal_transition"

        history = HistoryOut.model_validate(acme.get(f"/v1/executions/{eid}/history").json())
        operated = [(h.source, h.to) for h in history.history if h.actor == f"key:{key_id}"]
        assert operated[1:] == [
            ("waiting_input", "paused"),
            ("paused", "waiting_input"),
            ("waiting_input", "running"),
            ("waiting_input", "cancelled"),
        ]
        audit = [(a.operation, a.actor, a.reason) for a in history.audit]
        assert audit == [
            ("pause", f"key:{key_id}", "customer called"),
            ("resume", f"key:{key_id}", None),
            ("advance", f"key:{key_id}", "skip"),
            ("cancel", f"key:{key_id}", "test over"),
        ]
        assert history.audit[2].details == {"fromNode": "ask_cpf", "toNode": "ask_email"}
        logs = acme.get(f"/v1/executions/{eid}/logs", params={"level": "INFO"}).json()["logs"]
        assert [line["message"] for line in logs if line["message"].startswith("operator.")] == [
            "operator.pause",
            "operator.resume",
            "operator.advance",
            "operator.cancel",
        ]


def test_operator_posts_are_idempotent_with_a_key(served: Api) -> None:
    """A repeated key answers the first operation's answer again: no second transition;
    the same key on another execution (another request) is 422."""
    with served.client() as acme:
        eid = waiting_execution(acme, "conv-idem")
        other = waiting_execution(acme, "conv-idem-2")
        key = {"Idempotency-Key": "pause-once"}
        first = acme.post(f"/v1/executions/{eid}/pause", json={"reason": "r"}, headers=key)
        again = acme.post(f"/v1/executions/{eid}/pause", json={"reason": "r"}, headers=key)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
        problem(acme.post(f"/v1/executions/{other}/pause", json={"reason": "r"}, headers=key), 422)
        assert status_of(acme, other) == "waiting_input"
        for action in ("resume", "advance", "cancel"):
            key = {"Idempotency-Key": f"{action}-once"}
            body = {"toNodeId": "ask_email"} if action == "advance" else None
            first = acme.post(f"/v1/executions/{eid}/{action}", json=body, headers=key)
            assert first.status_code == 200, first.text
            until(
                lambda: status_of(acme, eid) in {"waiting_input", "cancelled"},
                what=f"the {action} to settle",
            )
            count = len(transitions(acme, eid))
            again = acme.post(f"/v1/executions/{eid}/{action}", json=body, headers=key)
            assert (again.status_code, again.json()) == (200, first.json())
            assert len(transitions(acme, eid)) == count
        states = [t["to"] for t in transitions(acme, eid)]
        assert states.count("paused") == 1 and states.count("cancelled") == 1


def test_patch_variables(served: Api) -> None:
    """Set and unset by dotted paths; the flow reads the new values; audited; validated."""
    key_id = served.keys["acme_operator"].split("_")[1]
    with served.client() as acme, served.client("acme_viewer") as viewer:
        eid = waiting_execution(acme, "conv-vars")
        patched = acme.patch(
            f"/v1/executions/{eid}/variables",
            json={
                "set": {"contact.name": "Ana Lima", "crm.tier": "gold"},
                "unset": ["nothing.here"],
                "reason": "known customer",
            },
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["variables"] == {
            "contact": {"name": "Ana Lima"},
            "crm": {"tier": "gold"},
        }
        assert patched.json()["status"] == "waiting_input"
        acme.patch(f"/v1/executions/{eid}/variables", json={"unset": ["crm"]})
        moved = acme.post(f"/v1/executions/{eid}/advance", json={"toNodeId": "ask_cpf"})
        assert moved.status_code == 200
        until(lambda: bot_said(acme, eid, "Thanks, Ana Lima."), what="the new name used")
        view = acme.get(f"/v1/executions/{eid}").json()
        assert view["variables"] == {"contact": {"name": "Ana Lima"}}
        audit = acme.get(f"/v1/executions/{eid}/history").json()["audit"]
        assert audit[0]["operation"] == "set_variables"
        assert audit[0]["actor"] == f"key:{key_id}" and audit[0]["reason"] == "known customer"
        assert audit[0]["details"] == {
            "set": ["contact.name", "crm.tier"],
            "unset": ["nothing.here"],
        }
        assert "Ana Lima" not in json.dumps(audit)  # paths are audited, not values

        for bad in (
            {},
            {"set": {}},
            {"set": {"a b": 1}},
            {"set": {"list.0": 1}},
            {"set": {"a": 1}, "unset": ["a"]},
            {"set": {"a": 1}, "other": 2},
            {"unset": "a"},
        ):
            invalid = problem(acme.patch(f"/v1/executions/{eid}/variables", json=bad), 422)
            assert invalid["errors"], bad
        problem(viewer.patch(f"/v1/executions/{eid}/variables", json={"set": {"a": 1}}), 403)
        for action in ("pause", "resume", "cancel", "advance", "retry"):
            problem(viewer.post(f"/v1/executions/{eid}/{action}"), 403)
        assert viewer.get(f"/v1/executions/{eid}").status_code == 200
        acme.post(f"/v1/executions/{eid}/cancel")
        ended = problem(acme.patch(f"/v1/executions/{eid}/variables", json={"set": {"a": 1}}), 409)
        assert ended["currentStatus"] == "cancelled"


def test_retry_the_failed_step_now(own_served: Api, crm: Crm) -> None:
    """An execution backing off after a failed call is retried at once on request (not in
    600 s); the retry is audited and idempotent with a key. Nothing else is retried: a
    failed execution is final (409)."""
    served = own_served
    key_id = served.keys["acme_operator"].split("_")[1]
    with served.client() as acme:
        assert acme.put("/v1/flows/call", json=CALL).status_code == 201
        assert acme.put("/v1/flows/broken", json=BROKEN).status_code == 201
        eid = acme.post("/v1/executions", json=start_body("conv-r", "call")).json()["executionId"]
        until(lambda: status_of(acme, eid) == "recovering", what="the first failure")
        backing_off = acme.get(f"/v1/executions/{eid}").json()
        assert backing_off["attempts"] == 1 and backing_off["waitingFor"] == "retry"
        assert crm.calls == 1

        crm.up = True
        key = {"Idempotency-Key": "retry-1"}
        retried = acme.post(
            f"/v1/executions/{eid}/retry", json={"reason": "CRM is back"}, headers=key
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "running"
        until(lambda: status_of(acme, eid) == "completed", timeout=10, what="the retried call")
        assert bot_said(acme, eid, "Hello Ana") and crm.calls == 2
        replay = acme.post(
            f"/v1/executions/{eid}/retry", json={"reason": "CRM is back"}, headers=key
        )
        assert (replay.status_code, replay.json()) == (200, retried.json())
        assert crm.calls == 2
        history = transitions(acme, eid)
        row = next(t for t in history if t["actor"] == f"key:{key_id}" and t["from"])
        assert (row["from"], row["to"]) == ("recovering", "running")
        assert row["reason"].endswith("(attempt 2): CRM is back")
        assert [t["to"] for t in history] == ["running", "recovering", "running", "completed"]
        done = problem(acme.post(f"/v1/executions/{eid}/retry"), 409)
        assert done["currentStatus"] == "completed"

        waiting = waiting_execution(acme, "conv-r2")
        assert problem(acme.post(f"/v1/executions/{waiting}/retry"), 409)["currentStatus"] == (
            "waiting_input"
        )
        failed = acme.post("/v1/executions", json=start_body("conv-r3", "broken")).json()
        until(lambda: status_of(acme, failed["executionId"]) == "failed", what="the failure")
        refused = problem(acme.post(f"/v1/executions/{failed['executionId']}/retry"), 409)
        assert refused["currentStatus"] == "failed" and "final" in refused["detail"]
