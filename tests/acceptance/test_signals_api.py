"""Signals through a real ``trilha serve`` over HTTP, and across a restart of it: a
``wait_event`` node waits for ``POST /v1/executions/{id}/signals/{event}``; the signal
is applied once, refused with a problem when it cannot be kept, absent to another
institution; a wait and a stored signal survive the process being killed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_crash_safety import kill

from conftest import Api, Cli, module_api, serve, start_api
from trilha.api.routes.signals import SignalAccepted, SignalsOut

PAY = {
    "id": "pay",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "Pay with the link, please.", "next": "wait"},
        {
            "id": "wait",
            "type": "wait_event",
            "event": "payment.confirmed",
            "saveAs": "payment",
            "inputTimeoutSeconds": 3600,
            "next": "thanks",
        },
        {"id": "thanks", "type": "end", "text": "Paid {{payment.amount}}, thank you!"},
    ],
}
#: asks first: a signal that comes meanwhile waits for the wait_event node
ORDER = {
    "id": "order",
    "start": "name",
    "nodes": [
        {"id": "name", "type": "question", "text": "Name?", "variable": "name", "next": "w"},
        {"id": "w", "type": "wait_event", "event": "order.paid", "saveAs": "order", "next": "e"},
        {"id": "e", "type": "end", "text": "{{name}}: order {{order.id}} paid"},
    ],
}
CONFIG = '[channel]\nkind = "memory"\n[engine]\nmax_value_bytes = 200\nmax_pending_signals = 2\n'


def flows_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    for flow in (PAY, ORDER):
        (folder / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    return folder


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem document (RFC 9457) with this status, no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(client: httpx.Client, flow: str, conversation: str) -> str:
    answer = client.post(
        "/v1/executions",
        json={"flowId": flow, "conversationId": conversation, "contactId": f"c-{conversation}"},
    )
    assert answer.status_code == 201, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def waiting_for(client: httpx.Client, execution_id: str, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        ex = execution(client, execution_id)
        return ex if ex["status"] == "waiting_input" and ex["waitingFor"] == what else None

    found: dict[str, Any] = until(check, f"{execution_id} to wait for {what}")
    return found


def ended(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        ex = execution(client, execution_id)
        return ex if ex["endedAt"] else None

    found: dict[str, Any] = until(check, f"{execution_id} to end")
    return found


def send(
    client: httpx.Client, execution_id: str, event: str, signal_id: str, payload: Any = None
) -> httpx.Response:
    return client.post(
        f"/v1/executions/{execution_id}/signals/{event}",
        json={"signalId": signal_id, "payload": payload},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    flows = flows_dir(tmp_path_factory.mktemp("signal-flows"))
    with module_api(tmp_path_factory, "signals", "--flows", str(flows), config=CONFIG) as api:
        yield api


@pytest.fixture
def api(server: Api) -> Api:
    """The module's server, with institutions of the test's own."""
    return server.tenant()


def test_a_signal_over_http_is_applied_once(api: Api) -> None:
    """The execution waits for event:payment.confirmed; the signal answers 202 and the
    payload lands in saveAs; the same signalId again answers the first signal; a new
    one to the ended execution is 409; the steps, trail and signal list tell it all."""
    with api.client() as acme:
        eid = start(acme, "pay", "conv-pay")
        waiting = waiting_for(acme, eid, "event:payment.confirmed")
        assert waiting["currentNodeId"] == "wait" and waiting["dueAt"]

        sent = send(acme, eid, "payment.confirmed", "pix-1", {"amount": "R$ 10"})
        assert sent.status_code == 202, sent.text
        first = SignalAccepted.model_validate(sent.json())
        assert (first.accepted, first.duplicate, first.execution_id) == (True, False, eid)
        assert (first.event, first.signal_id) == ("payment.confirmed", "pix-1")
        done = ended(acme, eid)
        assert done["status"] == "completed"
        assert done["variables"]["payment"] == {"amount": "R$ 10"}

        again = send(acme, eid, "payment.confirmed", "pix-1", {"amount": "R$ 99"})
        assert again.status_code == 202, again.text
        repeat = SignalAccepted.model_validate(again.json())
        assert repeat.duplicate and repeat.received_at == first.received_at
        assert repeat.consumed_step is not None and repeat.consumed_at is not None

        late = problem(send(acme, eid, "payment.confirmed", "pix-2", {}), 409)
        assert late["type"] == "urn:trilha:problem:execution_ended"
        assert late["currentStatus"] == "completed"
        assert "it takes no more signals" in late["detail"]

        listed = SignalsOut.model_validate(acme.get(f"/v1/executions/{eid}/signals").json())
        assert [(s.signal_id, s.status, s.payload) for s in listed.signals] == [
            ("pix-1", "consumed", {"amount": "R$ 10"})
        ]
        steps = acme.get(f"/v1/executions/{eid}/steps").json()["steps"]
        took = next(s for s in steps if s["seq"] == repeat.consumed_step)
        assert took["nodeId"] == "wait"
        assert took["input"] == {
            "event": "payment.confirmed",
            "signalId": "pix-1",
            "payload": {"amount": "R$ 10"},
        }
        logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        said = [line["message"] for line in logs if line["message"].startswith("signal.")]
        assert said == ["signal.received", "signal.applied"]
        transcript = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
        assert [t["from"] for t in transcript] == ["bot", "bot"]  # a signal is no message
        assert transcript[-1]["text"] == "Paid R$ 10, thank you!"


def test_a_signal_before_the_node_waits_for_it(api: Api) -> None:
    """Sent while the execution waits for a reply: stored (pending), applied when the
    reply takes it to its wait_event node."""
    with api.client() as acme:
        eid = start(acme, "order", "conv-order")
        waiting_for(acme, eid, "input")
        assert send(acme, eid, "order.paid", "o-1", {"id": 7}).status_code == 202
        pending = acme.get(f"/v1/executions/{eid}/signals").json()["signals"]
        assert [s["status"] for s in pending] == ["pending"]
        assert execution(acme, eid)["waitingFor"] == "input"
        reply = acme.post(
            "/v1/conversations/conv-order/messages",
            json={"messageId": "m-1", "contactId": "c-conv-order", "text": "Ana"},
        )
        assert reply.status_code == 202, reply.text
        done = ended(acme, eid)
        assert done["status"] == "completed" and done["variables"]["order"] == {"id": 7}


def test_roles_tenancy_and_bounds(api: Api) -> None:
    """A viewer key is 403, another institution's key 404 (as for an id that exists
    nowhere), no key 401; a bad event name or body is 422 naming the field; a payload
    over max_value_bytes is 422 naming it; one over max_pending_signals is 409."""
    with api.client() as acme:
        eid = start(acme, "pay", "conv-bounds")
        waiting_for(acme, eid, "event:payment.confirmed")
    body = {"signalId": "s-1", "payload": {"amount": 1}}
    path = f"/v1/executions/{eid}/signals/payment.confirmed"
    with api.client("acme_viewer") as viewer:
        problem(viewer.post(path, json=body), 403)
        assert viewer.get(f"/v1/executions/{eid}/signals").status_code == 200
    with api.client("beta_operator") as beta:
        foreign = problem(beta.post(path, json=body), 404)
        ghost = problem(beta.post(path.replace(eid, "0" * 32), json=body), 404)
        assert foreign["detail"].replace(eid, "X") == ghost["detail"].replace("0" * 32, "X")
        problem(beta.get(f"/v1/executions/{eid}/signals"), 404)
    with httpx.Client(base_url=api.url) as anonymous:
        problem(anonymous.post(path, json=body), 401)
    with api.client() as acme:
        bad = problem(acme.post(f"/v1/executions/{eid}/signals/not%20an%20event", json=body), 422)
        assert [e["field"] for e in bad["errors"]] == ["path.event"]
        long = problem(acme.post(f"/v1/executions/{eid}/signals/{'e' * 101}", json=body), 422)
        assert [e["field"] for e in long["errors"]] == ["path.event"]
        missing = problem(acme.post(path, json={"payload": 1}), 422)
        assert [e["field"] for e in missing["errors"]] == ["body.signalId"]
        large = problem(acme.post(path, json={"signalId": "big", "payload": "x" * 300}), 422)
        assert large["errors"][0]["field"] == "body.payload"
        assert large["setting"] == "engine.max_value_bytes" and large["limit"] == 200
        assert "max_value_bytes" in large["detail"]
        assert acme.get(f"/v1/executions/{eid}/signals").json()["signals"] == []  # none kept

        for n in range(2):  # an event nothing waits for: pending, up to the bound
            assert send(acme, eid, "refund.approved", f"r-{n}").status_code == 202
        full = problem(send(acme, eid, "payment.confirmed", "s-1", {"amount": 1}), 409)
        assert full["setting"] == "engine.max_pending_signals"
        assert "2 signals not consumed yet" in full["detail"]
        assert execution(acme, eid)["status"] == "waiting_input"


@pytest.mark.slow
def test_a_wait_and_a_stored_signal_survive_a_restart(cli: Cli, tmp_path: Path) -> None:
    """Kill the server while executions wait for their events; a new server on the same
    file takes a signal sent to it; a signal stored by a server that was killed before
    any worker applied it is applied after the restart, once."""
    folder = flows_dir(tmp_path)
    api = start_api(cli, tmp_path, "--flows", str(folder), config=CONFIG)
    with api.client() as acme:
        first = start(acme, "pay", "conv-a")
        second = start(acme, "pay", "conv-b")
        for eid in (first, second):
            waiting_for(acme, eid, "event:payment.confirmed")
        due = execution(acme, first)["dueAt"]
    kill(api.process)

    # a server with no workers stores the signal, then dies before anything applies it
    process, url = serve(cli, tmp_path, api.store, "--flows", str(folder), "--workers", "0")
    headers = {"Authorization": f"Bearer {api.keys['acme_operator']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as acme:
        stored = send(acme, second, "payment.confirmed", "before-crash", {"amount": 2})
        assert stored.status_code == 202, stored.text
        assert execution(acme, second)["status"] == "waiting_input"  # no worker ran it
    kill(process)

    process, url = serve(cli, tmp_path, api.store, "--flows", str(folder))
    with httpx.Client(base_url=url, headers=headers, timeout=30) as acme:
        done = ended(acme, second)
        assert done["status"] == "completed" and done["variables"]["payment"] == {"amount": 2}
        still = execution(acme, first)
        assert still["status"] == "waiting_input" and still["dueAt"] == due
        assert send(acme, first, "payment.confirmed", "after", {"amount": 1}).status_code == 202
        assert ended(acme, first)["variables"]["payment"] == {"amount": 1}
        for eid, amount in ((first, 1), (second, 2)):
            logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
            applied = [line for line in logs if line["message"] == "signal.applied"]
            assert len(applied) == 1, logs
            said = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
            # each message once: none repeated by the restarts
            assert [t["text"] for t in said] == [
                "Pay with the link, please.",
                f"Paid {amount}, thank you!",
            ]
    kill(process)


@pytest.mark.slow
def test_trilha_signal_while_the_server_is_down(cli: Cli, tmp_path: Path) -> None:
    """``trilha signal --no-run`` stores a signal in the file while no server runs; the
    server started again applies it. The command refuses bad JSON and an ended execution
    with the reason, and reports a repeated id."""
    folder = flows_dir(tmp_path)
    api = start_api(cli, tmp_path, "--flows", str(folder), config=CONFIG)
    with api.client() as acme:
        eid = start(acme, "pay", "conv-cli")
        waiting_for(acme, eid, "event:payment.confirmed")
    kill(api.process)

    config = tmp_path / "trilha.toml"
    bad = cli("signal", eid, "payment.confirmed", "--payload", "{oops", "--store", api.store)
    assert bad.returncode == 1 and "--payload: not valid JSON" in bad.stderr
    stored = cli(
        "signal",
        eid,
        "payment.confirmed",
        "--payload",
        '{"amount": 5}',
        "--signal-id",
        "cli-1",
        "--no-run",
        "--store",
        api.store,
        "--config",
        config,
    )
    assert stored.returncode == 0, stored.stderr
    assert "signal cli-1 (payment.confirmed) stored" in stored.stderr
    assert "waiting_input" in stored.stderr  # --no-run: nothing applied it yet

    process, url = serve(cli, tmp_path, api.store, "--flows", str(folder))
    headers = {"Authorization": f"Bearer {api.keys['acme_operator']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as acme:
        done = ended(acme, eid)
        assert done["status"] == "completed" and done["variables"]["payment"] == {"amount": 5}
    kill(process)

    again = cli("signal", eid, "payment.confirmed", "--signal-id", "cli-1", "--store", api.store)
    assert again.returncode == 0, again.stderr
    assert "duplicate signal id cli-1" in again.stderr and "(applied)" in again.stderr
    late = cli("signal", eid, "payment.confirmed", "--store", api.store)
    assert late.returncode == 1
    assert "error[execution_ended]" in late.stderr and "no more signals" in late.stderr


def test_trilha_run_stops_at_an_event_wait_and_signal_moves_it_on(cli: Cli, tmp_path: Path) -> None:
    """``trilha run`` stops where the flow waits for an event (a reply would not move
    it) and says how to go on; ``trilha signal`` applies the payload and runs it to its
    end, printing what the bot says."""
    flow = tmp_path / "order.json"
    flow.write_text(json.dumps(ORDER), encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    ran = cli("run", flow, "--store", store, "--input", "Ana", "--input", "ignored")
    assert ran.returncode == 0, ran.stderr
    assert "bot> Name?" in ran.stdout and "ignored" not in ran.stdout
    assert "waiting_input at node 'w'" in ran.stderr
    (line,) = [x for x in ran.stderr.splitlines() if "continue with: trilha signal" in x]
    execution_id = line.split("trilha signal ")[1].split()[0]
    assert "waits for event order.paid" in line and "order.paid --payload JSON" in line

    signalled = cli(
        "signal", execution_id, "order.paid", "--payload", '{"id": 9}', "--store", store
    )
    assert signalled.returncode == 0, signalled.stderr
    assert "bot> Ana: order 9 paid" in signalled.stdout
    assert f"execution {execution_id}: completed" in signalled.stderr
