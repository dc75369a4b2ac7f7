"""Conversations that start themselves, through a real ``trilha serve`` over HTTP: triggers
from trilha.toml and from ``PUT /v1/triggers``, a contact's first message starting a flow
(once, however often or concurrently it is delivered), interrupts of both kinds, tenancy,
and a burst of messages that waits out its window across a killed server."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, module_api, serve, start_api
from trilha.api.routes.messages import MessageAccepted

PROBLEM_KEYS = {"type", "title", "status", "detail"}

CLINIC = {
    "id": "clinic_t",
    "start": "hello",
    "interrupts": [{"keywords": ["atendente"], "goTo": "to_desk"}],
    "nodes": [
        {
            "id": "hello",
            "type": "message",
            "text": "Olá! Você escreveu: {{sys.trigger.text}}",
            "next": "ask",
        },
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Tchau {{name}}"},
        {"id": "to_desk", "type": "handoff", "queue": "desk", "text": "Chamando alguém."},
    ],
}
WELCOME = {
    "id": "welcome_t",
    "start": "hi",
    "nodes": [{"id": "hi", "type": "end", "text": "Bem-vindo! Digite oi para começar."}],
}
BURST = {
    "id": "burst_t",
    "start": "ask",
    "settings": {"debounceMs": 4_000},
    "nodes": [
        {"id": "ask", "type": "question", "text": "Conte tudo", "variable": "said", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Entendi."},
    ],
}
CONFIG = """[channel]
kind = "memory"

[[triggers]]
institution = "acme"
keywords = ["oi", "olá"]
flow_id = "clinic_t"

[[triggers]]
institution = "acme"
default = true
flow_id = "welcome_t"

[[triggers]]
institution = "acme"
keywords = ["conte"]
flow_id = "burst_t"
"""


def flows_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    for flow in (CLINIC, WELCOME, BURST):
        (folder / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    return folder


#: the tenants the module's server is configured for: one per test (see ``api``)
TENANTS = [f"t{n}" for n in range(20)]


def config_for(institutions: list[str]) -> str:
    """CONFIG with acme's triggers given to each of ``institutions``."""
    head, triggers = CONFIG.split("\n\n", 1)
    return "\n\n".join(
        [head]
        + [
            triggers.replace('institution = "acme"', f'institution = "{name}"')
            for name in institutions
        ]
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Iterator[str]]]:
    """A served API whose tests' acme have triggers in trilha.toml, over the flows above
    (shared)."""
    flows = ("--flows", str(flows_dir(tmp_path_factory.mktemp("trigger-flows"))))
    config = config_for([f"acme-{tag}" for tag in TENANTS])
    with module_api(tmp_path_factory, "triggers", *flows, config=config) as api:
        yield api, iter(TENANTS)


@pytest.fixture
def api(server: tuple[Api, Iterator[str]]) -> Api:
    """The module's server, with institutions no other test uses (acme's with triggers)."""
    served, tags = server
    return served.tenant(next(tags))


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and "Traceback" not in response.text
    return body


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def send(
    client: httpx.Client, conversation: str, message_id: str, text: str, **extra: Any
) -> httpx.Response:
    body = {"messageId": message_id, "contactId": f"k-{conversation}", "text": text, **extra}
    return client.post(f"/v1/conversations/{conversation}/messages", json=body)


def execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def transcript(client: httpx.Client, execution_id: str) -> list[tuple[str, str]]:
    lines = client.get(f"/v1/executions/{execution_id}/transcript").json()["transcript"]
    return [(t["from"], t["text"]) for t in lines]


def test_a_first_message_starts_the_matching_flow_once(api: Api) -> None:
    """The configuration's triggers apply; the message is sys.trigger, not the first
    answer; a retry is a duplicate; another message starts the default; a tenant without
    triggers gets 404 as before."""
    with api.client() as acme:
        listed = acme.get("/v1/triggers").json()
        assert listed["source"] == "config"
        assert listed["institutionId"] == api.institutions["acme"]
        assert [t["flowId"] for t in listed["triggers"]] == ["clinic_t", "welcome_t", "burst_t"]

        first = send(acme, "conv-1", "wamid.1", "Olá, bom dia!")
        assert first.status_code == 202, first.text
        accepted = MessageAccepted.model_validate(first.json())
        assert accepted.started and not accepted.duplicate
        assert accepted.trigger is not None and accepted.trigger.keyword == "olá"
        assert accepted.trigger.flow_id == "clinic_t" and accepted.trigger.replaced is None
        eid = accepted.execution_id
        assert eid is not None
        until(lambda: execution(acme, eid)["status"] == "waiting_input", "the question")
        assert "name" not in execution(acme, eid)["variables"]
        assert transcript(acme, eid) == [
            ("contact", "Olá, bom dia!"),
            ("bot", "Olá! Você escreveu: Olá, bom dia!"),
            ("bot", "Seu nome?"),
        ]
        again = send(acme, "conv-1", "wamid.1", "Olá, bom dia!")
        assert again.status_code == 202
        assert again.json()["duplicate"] is True and again.json()["executionId"] == eid
        assert "started" not in again.json()  # this delivery started nothing

        answered = send(acme, "conv-1", "wamid.2", "Ana")
        assert "started" not in answered.json() and answered.json()["executionId"] == eid
        until(lambda: execution(acme, eid)["status"] == "completed", "the end")
        assert execution(acme, eid)["variables"]["name"] == "Ana"
        steps = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        assert "execution.triggered" in [line["message"] for line in steps]

        # the conversation ended: a new message starts again; no keyword: the default
        other = send(acme, "conv-1", "wamid.3", "preciso de ajuda")
        assert other.status_code == 202 and other.json()["started"] is True
        assert other.json()["trigger"]["default"] is True
        assert other.json()["trigger"]["keyword"] is None
        welcome = other.json()["executionId"]
        until(lambda: execution(acme, welcome)["status"] == "completed", "the welcome")
        assert execution(acme, welcome)["flowId"] == "welcome_t"

    with api.client("beta_operator") as beta:  # beta has no triggers: as before, 404
        assert beta.get("/v1/triggers").json()["source"] == "none"
        refused = problem(send(beta, "conv-1", "wamid.1", "oi"), 404)
        assert refused["type"] == "urn:trilha:problem:no_active_execution"


def test_put_replaces_the_configuration_and_is_checked(api: Api) -> None:
    """PUT replaces config triggers whole, is validated field by field (flow, repeated
    keyword naming both, second default), is per institution; DELETE goes back."""
    triggers = [
        {"keywords": ["menu"], "flowId": "clinic_t"},
        {"keywords": ["recomeçar"], "flowId": "clinic_t", "interrupt": True},
    ]
    with api.client() as acme, api.client("acme_viewer") as viewer:
        put = acme.put("/v1/triggers", json=triggers)
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "api" and put.json()["updatedBy"].startswith("key:")
        assert put.json()["triggers"] == triggers
        assert viewer.get("/v1/triggers").json()["triggers"] == triggers
        problem(viewer.put("/v1/triggers", json=[]), 403)
        problem(viewer.delete("/v1/triggers"), 403)
        # the configuration's "oi" no longer starts anything, and there is no default
        problem(send(acme, "conv-2", "m1", "oi"), 404)
        assert send(acme, "conv-2", "m2", "MENU").json()["started"] is True

        bad = problem(
            acme.put(
                "/v1/triggers",
                json=[
                    {"keywords": ["oi"], "flowId": "nowhere"},
                    {"keywords": ["Oi!"], "flowId": "clinic_t"},
                    {"default": True, "flowId": "clinic_t"},
                    {"default": True, "flowId": "welcome_t"},
                ],
            ),
            422,
        )
        fields = {e["field"]: e["message"] for e in bad["errors"]}
        assert set(fields) == {"body[0].flowId", "body[1].keywords[0]", "body[3].default"}
        assert "body[0].keywords[0]" in fields["body[1].keywords[0]"]
        assert "body[2]" in fields["body[3].default"]
        shape = problem(acme.put("/v1/triggers", json=[{"flowId": "clinic_t"}]), 422)
        assert shape["errors"][0]["field"] == "body[0]"
        problem(acme.put("/v1/triggers", json=[{"keywords": ["x"], "flowId": "a/b"}]), 422)
        too_many = [{"keywords": [f"k{i}"], "flowId": "clinic_t"} for i in range(101)]
        problem(acme.put("/v1/triggers", json=too_many), 422)
        assert acme.get("/v1/triggers").json()["triggers"] == triggers  # unchanged

        # a flow's interrupts are checked at publish: goTo names a node of the flow
        broken = {**CLINIC, "id": "broken", "interrupts": [{"keywords": ["x"], "goTo": "nope"}]}
        refused = problem(acme.put("/v1/flows/broken", json=broken), 422)
        assert "interrupts[0].goTo" in [e["field"] for e in refused["errors"]]
        twice = [{"keywords": ["menu"], "goTo": "ask"}, {"keywords": ["Menu"], "goTo": "to_desk"}]
        refused = problem(acme.put("/v1/flows/broken", json={**broken, "interrupts": twice}), 422)
        assert "interrupts[1].keywords[0]" in [e["field"] for e in refused["errors"]]

        deleted = acme.delete("/v1/triggers")
        assert deleted.status_code == 200 and deleted.json()["source"] == "config"
        assert len(deleted.json()["triggers"]) == 3

    acme_id, beta_id = api.institutions["acme"], api.institutions["beta"]
    with api.client("beta_operator") as beta, api.client("admin") as admin:
        problem(beta.get("/v1/triggers", params={"institutionId": acme_id}), 404)
        problem(beta.put("/v1/triggers", params={"institutionId": acme_id}, json=[]), 404)
        problem(beta.delete("/v1/triggers", params={"institutionId": acme_id}), 404)
        # beta cannot name acme's own flow: the name resolves within beta (and shared)
        assert admin.put(
            "/v1/flows/acme_only",
            params={"institutionId": acme_id},
            json={**WELCOME, "id": "acme_only"},
        ).status_code in (200, 201)
        refused = problem(
            beta.put("/v1/triggers", json=[{"default": True, "flowId": "acme_only"}]), 422
        )
        assert refused["errors"][0]["field"] == "body[0].flowId"
        assert (
            beta.put("/v1/triggers", json=[{"default": True, "flowId": "welcome_t"}]).status_code
            == 200
        )
        # one conversation id in two institutions: each starts its own's trigger
        for client, institution in ((admin, acme_id), (beta, beta_id)):
            extra = {"institutionId": institution} if client is admin else {}
            started = send(client, "conv-x", "m1", "zzz", **extra)
            assert started.json()["started"] is True, started.text
            ex = execution(admin, started.json()["executionId"])
            assert ex["institutionId"] == institution and ex["flowId"] == "welcome_t"
        problem(admin.get("/v1/triggers"), 422)
        assert (
            admin.get("/v1/triggers", params={"institutionId": beta_id}).json()["source"] == "api"
        )


def test_interrupts_replace_or_redirect_a_running_conversation(api: Api) -> None:
    """An interrupting trigger replaces the running execution (cancelled, naming it); a
    flow's interrupt takes the reply to its node; a paused one is left alone."""
    with api.client() as acme:
        acme.put(
            "/v1/triggers",
            json=[
                {"keywords": ["oi"], "flowId": "clinic_t"},
                {"keywords": ["recomeçar"], "flowId": "clinic_t", "interrupt": True},
            ],
        ).raise_for_status()
        old = send(acme, "conv-3", "m1", "oi").json()["executionId"]
        until(lambda: execution(acme, old)["status"] == "waiting_input", "the question")
        replaced = send(acme, "conv-3", "m2", "quero RECOMEÇAR")
        assert replaced.status_code == 202, replaced.text
        body = replaced.json()
        assert body["started"] is True and body["trigger"]["replaced"] == old
        new = body["executionId"]
        cancelled = execution(acme, old)
        assert cancelled["status"] == "cancelled"
        assert new in cancelled["history"][-1]["reason"]
        until(lambda: execution(acme, new)["status"] == "waiting_input", "the new question")
        # the flow's own interrupt: the reply goes to its node, not to the question
        send(acme, "conv-3", "m3", "atendente, por favor").raise_for_status()
        until(lambda: execution(acme, new)["status"] == "completed", "the handoff")
        ended = execution(acme, new)
        assert ended["outcome"] == "escalated" and "name" not in ended["variables"]
        assert transcript(acme, new)[-1] == ("bot", "Chamando alguém.")

        paused = send(acme, "conv-4", "m1", "oi").json()["executionId"]
        until(lambda: execution(acme, paused)["status"] == "waiting_input", "the question")
        acme.post(f"/v1/executions/{paused}/pause", json={"reason": "a person"}).raise_for_status()
        kept = send(acme, "conv-4", "m2", "recomeçar")
        assert "started" not in kept.json() and kept.json()["executionId"] == paused
        assert execution(acme, paused)["status"] == "paused"


def test_one_message_delivered_at_once_many_times_starts_one_execution(api: Api) -> None:
    """Concurrent deliveries of one messageId: one start, the others its duplicates."""
    with api.client() as acme:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: send(acme, "conv-5", "same", "oi"), range(8)))
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        bodies = [a.json() for a in answers]
        assert len({b["executionId"] for b in bodies}) == 1
        assert sum(b.get("started", False) for b in bodies) == 1
        assert sum(not b["duplicate"] for b in bodies) == 1
        listed = acme.get("/v1/executions", params={"conversationId": "conv-5"}).json()
        assert len(listed["executions"]) == 1


@pytest.mark.slow
def test_a_burst_waits_out_its_window_across_a_killed_server(cli: Cli, tmp_path: Path) -> None:
    """Two messages typed in a burst, the server SIGKILLed inside the window, started again
    on the same file: the burst is taken as one reply, once."""
    api = start_api(cli, tmp_path, "--flows", str(flows_dir(tmp_path)), config=CONFIG)
    with api.client() as acme:
        eid = send(acme, "conv-b", "b0", "conte").json()["executionId"]
        until(lambda: execution(acme, eid)["status"] == "waiting_input", "the question")
        for n, text in enumerate(["marquei ontem", "mas preciso remarcar"], start=1):
            sent = send(acme, "conv-b", f"b{n}", text)
            assert sent.status_code == 202 and sent.json()["executionId"] == eid
    api.stop(signal.SIGKILL)
    db = tmp_path / "api.db"
    with sqlite3.connect(db) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM inbox WHERE execution_id = ? AND applied_at IS NULL", (eid,)
        ).fetchone()[0]
        variables = conn.execute("SELECT variables FROM executions WHERE id = ?", (eid,)).fetchone()
    assert pending == 2 and "said" not in json.loads(variables[0])  # killed inside the window

    process, url = serve(cli, tmp_path, api.store, "--flows", str(flows_dir(tmp_path)))
    again = Api(url, process, api.store, api.keys)
    with again.client() as acme:
        until(lambda: execution(acme, eid)["status"] == "completed", "the burst", timeout=30)
        done = execution(acme, eid)
        assert done["variables"]["said"] == "marquei ontem\nmas preciso remarcar"
        assert transcript(acme, eid) == [
            ("contact", "conte"),
            ("bot", "Conte tudo"),
            ("contact", "marquei ontem"),
            ("contact", "mas preciso remarcar"),
            ("bot", "Entendi."),
        ]
        steps = acme.get(f"/v1/executions/{eid}/steps").json()["steps"]
        consumed = [s for s in steps if s["input"]]
        assert len(consumed) == 1 and consumed[0]["input"]["burst"] == ["b1"]
    check = cli("check", "--store", api.store, "--json")
    assert check.returncode == 0, check.stdout + check.stderr
