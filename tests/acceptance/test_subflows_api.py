"""Sub-flows that return, through a real ``trilha serve`` over HTTP: publishing refuses
another institution's flow and warns of a call cycle; the execution view shows the
call stack (which frame runs, each caller's variables); and the stack survives the
server being killed while the sub-flow waits for the contact, with the row corrupted
meanwhile too (restored from its last checkpoint)."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, Drain, serve, start_api
from trilha.api.routes.executions import ExecutionOut

pytestmark = pytest.mark.slow

ADDRESS = {
    "id": "address",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Number at {{cep}}?", "variable": "number",
         "next": "keep"},
        {"id": "keep", "type": "set",
         "variables": {"result": {"cep": "{{cep}}", "number": "{{number}}"}}, "next": "bye"},
        {"id": "bye", "type": "end", "text": "Address noted."},
    ],
}  # fmt: skip
MAIN = {
    "id": "main",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "set", "variables": {"secret": "caller-only"}, "next": "call"},
        {
            "id": "call",
            "type": "subflow",
            "flowId": "address",
            "input": {"cep": "{{cep0}}"},
            "output": {"address": "result"},
            "branches": {"failed": "sorry"},
            "next": "done",
        },
        {"id": "done", "type": "end", "text": "Got n. {{address.number}} ({{secret}})"},
        {"id": "sorry", "type": "end", "text": "Could not get it."},
    ],
}


def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def publish(client: httpx.Client, flow: dict[str, Any]) -> dict[str, Any]:
    answer = client.put(f"/v1/flows/{flow['id']}", json=flow)
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


def started(client: httpx.Client, conversation: str) -> str:
    answer = client.post(
        "/v1/executions",
        json={
            "flowId": "main",
            "conversationId": conversation,
            "contactId": f"contact-{conversation}",
            "variables": {"cep0": "01001-000"},
        },
    )
    assert answer.status_code == 201, answer.text
    eid: str = answer.json()["executionId"]
    return eid


def view(client: httpx.Client, eid: str) -> ExecutionOut:
    answer = client.get(f"/v1/executions/{eid}")
    assert answer.status_code == 200, answer.text
    return ExecutionOut.model_validate(answer.json())


def status(client: httpx.Client, eid: str) -> str | None:
    """The execution's status; None while its row is being restored (409)."""
    answer = client.get(f"/v1/executions/{eid}")
    if answer.status_code == 409:
        return None
    assert answer.status_code == 200, answer.text
    found: str = answer.json()["status"]
    return found


def waiting_in_sub_flow(client: httpx.Client, eid: str) -> ExecutionOut | None:
    shown = view(client, eid)
    return shown if shown.status == "waiting_input" and len(shown.stack) == 2 else None


def reply(client: httpx.Client, conversation: str, text: str, n: int = 1) -> None:
    sent = client.post(
        f"/v1/conversations/{conversation}/messages",
        json={"messageId": f"{conversation}-{n}", "contactId": f"contact-{conversation}",
              "text": text},
    )  # fmt: skip
    assert sent.status_code == 202, sent.text


def check_stack(shown: ExecutionOut) -> None:
    """The caller waits at its subflow node with its own variables; the sub-flow runs
    with its input alone."""
    caller, running = shown.stack
    assert (caller.flow_id, caller.version, caller.node_id, caller.running) == (
        "acme/main",
        1,
        "call",
        False,
    )
    assert caller.variables == {"cep0": "01001-000", "secret": "caller-only"}
    assert (running.flow_id, running.node_id, running.running) == ("acme/address", "ask", True)
    assert running.variables is None
    assert shown.flow_id == "acme/address" and shown.variables == {"cep": "01001-000"}


@pytest.fixture
def api(cli: Cli, tmp_path: Path) -> Api:
    return start_api(cli, tmp_path)


def test_publishing_refuses_another_institutions_flow_and_warns_of_a_cycle(api: Api) -> None:
    """acme's flow calling beta's is 422 naming the field; a cycle through stored
    flows is a warning on the flow that closes it."""
    with api.client() as acme:
        refused = acme.put("/v1/flows/main", json={**MAIN, "nodes": [
            MAIN["nodes"][0], {**MAIN["nodes"][1], "flowId": "beta/address"}, *MAIN["nodes"][2:]
        ]})  # fmt: skip
        assert refused.status_code == 422, refused.text
        assert any(
            e["field"] == "nodes[1].flowId" and "another institution" in e["message"]
            for e in refused.json()["errors"]
        )
        ping = {"id": "ping", "start": "c", "nodes": [
            {"id": "c", "type": "subflow", "flowId": "pong", "next": "e"},
            {"id": "e", "type": "end"},
        ]}  # fmt: skip
        pong = {"id": "pong", "start": "c", "nodes": [
            {"id": "c", "type": "subflow", "flowId": "ping", "next": "e"},
            {"id": "e", "type": "end"},
        ]}  # fmt: skip
        first = publish(acme, ping)
        assert not any("cycle" in w for w in first["warnings"])
        closing = publish(acme, pong)
        assert any("cycle" in w and "pong → ping → pong" in w for w in closing["warnings"])


def test_the_execution_view_shows_the_call_stack(api: Api) -> None:
    """While the sub-flow waits, GET /v1/executions/{id} has two frames, the running
    one last; after it returns, one frame in the caller's flow."""
    with api.client() as acme:
        publish(acme, ADDRESS)
        publish(acme, MAIN)
        eid = started(acme, "conv-view")
        shown = until(lambda: waiting_in_sub_flow(acme, eid), what="the sub-flow's question")
        check_stack(shown)
        with api.client("beta_operator") as beta:
            assert beta.get(f"/v1/executions/{eid}").status_code == 404

        reply(acme, "conv-view", "42")
        until(lambda: view(acme, eid).status == "completed", what="completion")
        done = view(acme, eid)
        assert [(f.flow_id, f.node_id, f.running) for f in done.stack] == [
            ("acme/main", "done", True)
        ]
        assert done.variables["address"] == {"cep": "01001-000", "number": "42"}
        said = [t.text for t in done.transcript]
        assert said == ["Number at 01001-000?", "42", "Address noted.", "Got n. 42 (caller-only)"]


@pytest.mark.parametrize("corrupt", [False, True], ids=["killed", "killed-and-corrupted"])
def test_the_stack_survives_a_restart_while_the_sub_flow_waits(
    cli: Cli, tmp_path: Path, corrupt: bool
) -> None:
    """SIGKILL the server while the sub-flow waits for the contact; (optionally damage
    the row meanwhile); a new server on the same file shows the same stack (or restores
    it from the last checkpoint) and the reply returns to the caller, each message
    said once."""
    api = start_api(cli, tmp_path)
    with api.client() as acme:
        publish(acme, ADDRESS)
        publish(acme, MAIN)
        eid = started(acme, "conv-crash")
        before = until(lambda: waiting_in_sub_flow(acme, eid), what="the sub-flow's question")
        check_stack(before)
    api.stop(signal.SIGKILL)
    db = Path(api.store.removeprefix("sqlite:///"))
    if corrupt:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE executions SET variables = '{broken' WHERE id = ?", (eid,))

    process, url = serve(cli, tmp_path, api.store)
    again = Api(url, process, api.store, api.keys, Drain(process))
    with again.client() as acme:
        if not corrupt:
            check_stack(view(acme, eid))
        else:  # being restored: its tenant hears so, never another's row
            assert acme.get(f"/v1/executions/{eid}").status_code == 409
        reply(acme, "conv-crash", "7")
        until(lambda: status(acme, eid) == "completed", what="completion", timeout=30)
        done = view(acme, eid)
        assert done.variables["address"] == {"cep": "01001-000", "number": "7"}
        assert done.variables["secret"] == "caller-only"
        bot = [t.text for t in done.transcript if t.sender == "bot"]
        assert bot == ["Number at 01001-000?", "Address noted.", "Got n. 7 (caller-only)"]
        logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        restored = [
            line["context"].get("metadata") or {}
            for line in logs
            if line["message"] == "execution.corrupted"
        ]
        restored = [found for found in restored if "flowId" in found]
        if corrupt:
            assert restored and restored[-1]["flowId"] == "acme/address"
            assert restored[-1]["restoredFromCheckpoint"] is not None
        else:
            assert restored == []
    again.stop()
