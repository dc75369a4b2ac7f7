"""A platform's conversation through ``trilha serve``: start executions, deliver the
contact's messages, read what happened; retries, conflicts, paging, tenancy and
back-pressure, against a real server process over HTTP."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, module_api, start_api
from trilha.api.routes.executions import (
    ExecutionOut,
    ExecutionPage,
    HistoryOut,
    LogsOut,
    StepsOut,
    TranscriptOut,
)
from trilha.api.routes.messages import MessageAccepted

PROBLEM_KEYS = {"type", "title", "status", "detail"}
WAITS = {
    "id": "waits",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye {{name}}"},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "conversation", "--flows", str(EXAMPLES)) as api:
        yield api


@pytest.fixture
def api(server: Api) -> Api:
    """The module's server (the examples as shared flows), with institutions of the
    test's own."""
    return server.tenant()


@pytest.fixture
def own_api(cli: Cli, tmp_path: Path) -> Api:
    """A server of the test's own, with the examples as shared flows."""
    return start_api(cli, tmp_path, "--flows", str(EXAMPLES))


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem document (RFC 9457) with this status, no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert "Traceback" not in response.text
    return body


def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def start_body(conversation: str, flow: str = "onboarding", **extra: Any) -> dict[str, Any]:
    return {
        "flowId": flow,
        "conversationId": conversation,
        "contactId": f"contact-{conversation}",
        **extra,
    }


def status_of(client: httpx.Client, execution_id: str) -> str:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


def bot_said(client: httpx.Client, execution_id: str, text: str) -> bool:
    transcript = client.get(f"/v1/executions/{execution_id}/transcript").json()["transcript"]
    return any(t["from"] == "bot" and text in t["text"] for t in transcript)


def test_a_whole_conversation_through_the_api(api: Api) -> None:
    """Start onboarding, read the bot's question, answer it, see it complete; its
    history, steps, logs and transcript read back in the documented shapes."""
    with api.client() as acme:
        started = acme.post(
            "/v1/executions",
            json=start_body("whatsapp:5511", variables={"channel": "whatsapp"}),
            headers={"Idempotency-Key": "start-1"},
        )
        assert started.status_code == 201, started.text
        execution = ExecutionOut.model_validate(started.json())
        eid = execution.execution_id
        assert execution.flow_id == "onboarding"
        assert execution.institution_id == api.institutions["acme"]
        assert execution.variables == {"channel": "whatsapp"}
        until(lambda: bot_said(acme, eid, "What is your full name?"), what="the first question")

        replies = ["Maria Silva", "123.456.789-09", "maria@example.com", "sim"]
        for n, text in enumerate(replies):  # sent at once: applied in order all the same
            sent = acme.post(
                "/v1/conversations/whatsapp:5511/messages",
                json={
                    "messageId": f"wamid.{n}",
                    "contactId": "contact-whatsapp:5511",
                    "text": text,
                },
            )
            assert sent.status_code == 202, sent.text
            accepted = MessageAccepted.model_validate(sent.json())
            assert not accepted.duplicate and accepted.execution_id == eid
        until(lambda: status_of(acme, eid) == "completed", what="completion")

        done = ExecutionOut.model_validate(acme.get(f"/v1/executions/{eid}").json())
        assert done.outcome == "completed" and done.current_node_id == "bye"
        assert done.variables["onboarded"] is True and done.variables["email"] == (
            "maria@example.com"
        )
        transcript = TranscriptOut.model_validate(
            acme.get(f"/v1/executions/{eid}/transcript").json()
        ).transcript
        said = [(t.sender, t.text) for t in transcript]
        assert said[0] == ("bot", "Olá! Welcome to Banco Trilha. Let's open your account.")
        assert said[1:4] == [
            ("bot", "What is your full name?"),
            ("contact", "Maria Silva"),
            ("bot", "Thanks, Maria Silva. What is your CPF (11 digits)?"),
        ]
        assert [text for who, text in said if who == "contact"] == replies
        assert said[-1] == (
            "bot",
            "Welcome aboard, Maria Silva! Your account request is on its way.",
        )

        history = HistoryOut.model_validate(acme.get(f"/v1/executions/{eid}/history").json())
        states = [h.to for h in history.history]
        assert states[0] == "running" and states[-1] == "completed"
        assert states.count("waiting_input") == 4 and history.audit == []
        assert history.history[0].actor.startswith("key:")

        steps = StepsOut.model_validate(acme.get(f"/v1/executions/{eid}/steps").json()).steps
        nodes = [s.node_id for s in steps]
        assert nodes[0] == "welcome" and "mark_done" in nodes and nodes[-1] == "bye"
        assert all(s.error is None for s in steps)

        logs = LogsOut.model_validate(acme.get(f"/v1/executions/{eid}/logs").json()).logs
        messages = [line.message for line in logs]
        assert "execution.started" in messages and "node.entered" in messages
        assert all(line.context["institutionId"] == api.institutions["acme"] for line in logs)
        info = acme.get(f"/v1/executions/{eid}/logs", params={"level": "info"}).json()["logs"]
        assert info and all(line["level"] != "DEBUG" for line in info)
        assert len(info) < len(logs)
        problem(acme.get(f"/v1/executions/{eid}/logs", params={"level": "loud"}), 422)
        # the CPF the contact typed is masked in the trail
        assert "123.456.789-09" not in str([line.model_dump() for line in logs])


def test_messages_are_deduplicated_and_need_an_active_execution(api: Api) -> None:
    """A repeated messageId is acknowledged and ignored (also after the end); a message
    for a conversation with no active execution is 404 and not stored."""
    with api.client() as acme:
        message = {"messageId": "m-1", "contactId": "c", "text": "Ana"}
        early = problem(acme.post("/v1/conversations/conv-d/messages", json=message), 404)
        assert early["type"] == "urn:trilha:problem:no_active_execution"
        assert "nothing was stored" in early["detail"]

        assert acme.put("/v1/flows/waits", json=WAITS).status_code == 201
        eid = acme.post("/v1/executions", json=start_body("conv-d", "waits")).json()["executionId"]
        first = acme.post("/v1/conversations/conv-d/messages", json=message)
        assert first.status_code == 202 and first.json()["duplicate"] is False  # not stored before
        again = acme.post("/v1/conversations/conv-d/messages", json={**message, "text": "Bob"})
        assert again.status_code == 202 and again.json()["duplicate"] is True
        assert again.json()["executionId"] == eid
        until(lambda: status_of(acme, eid) == "completed", what="completion")
        transcript = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
        assert [t["text"] for t in transcript] == ["name?", "Ana", "bye Ana"]
        late = acme.post("/v1/conversations/conv-d/messages", json=message)
        assert late.status_code == 202 and late.json()["duplicate"] is True
        ended = acme.post("/v1/conversations/conv-d/messages", json={**message, "messageId": "m-2"})
        problem(ended, 404)
        with api.client("admin") as admin:
            problem(admin.post("/v1/conversations/conv-d/messages", json=message), 422)
            mixed = {**message, "messageId": "m-3", "institutionId": api.institutions["acme"]}
            problem(admin.post("/v1/conversations/conv-d/messages", json=mixed), 404)
        bad = {**message, "payload": "not an object"}
        problem(acme.post("/v1/conversations/conv-d/messages", json=bad), 422)


def test_every_post_is_idempotent_with_a_key(api: Api) -> None:
    """The same Idempotency-Key answers the same status and body and does nothing more;
    with another body it is 422 naming the header; keys are per institution."""
    with api.client() as acme, api.client("beta_operator") as beta:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = start_body("conv-i", "onboarding", variables={"a": 1})
        first = acme.post("/v1/executions", json=body, headers=key)
        assert first.status_code == 201
        again = acme.post("/v1/executions", json=dict(reversed(body.items())), headers=key)
        assert (again.status_code, again.content) == (201, first.content)  # byte for byte
        assert again.headers["idempotent-replayed"] == "true"
        listed = acme.get("/v1/executions", params={"conversationId": "conv-i"}).json()
        assert [e["executionId"] for e in listed["executions"]] == [first.json()["executionId"]]
        reused = problem(
            acme.post("/v1/executions", json={**body, "variables": {"a": 2}}, headers=key), 422
        )
        assert reused["errors"][0]["field"] == "header.Idempotency-Key"
        assert "Idempotency-Key" in reused["detail"]
        # beta's same key is its own: a start of its own, not acme's answer replayed
        theirs = beta.post("/v1/executions", json=body, headers=key)
        assert theirs.status_code == 201
        assert theirs.json()["executionId"] != first.json()["executionId"]

        # a refusal is an answer too: the same key keeps answering it
        busy_key = {"Idempotency-Key": "busy-1"}
        busy = acme.post("/v1/executions", json=body, headers=busy_key)
        assert problem(busy, 409)["executionId"] == first.json()["executionId"]
        assert acme.post("/v1/executions", json=body, headers=busy_key).json() == busy.json()

        eid = first.json()["executionId"]
        until(lambda: bot_said(acme, eid, "What is your full name?"), what="the question")
        msg_key = {"Idempotency-Key": "msg-1"}
        message = {"messageId": "wamid.x", "contactId": "c", "text": "Maria Silva"}
        sent = acme.post("/v1/conversations/conv-i/messages", json=message, headers=msg_key)
        resent = acme.post("/v1/conversations/conv-i/messages", json=message, headers=msg_key)
        assert sent.status_code == resent.status_code == 202
        assert sent.json() == resent.json() and sent.json()["duplicate"] is False
        problem(
            acme.post(
                "/v1/conversations/conv-i/messages",
                json={**message, "text": "other"},
                headers=msg_key,
            ),
            422,
        )
        until(lambda: bot_said(acme, eid, "What is your CPF"), what="the second question")
        transcript = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
        assert [t["text"] for t in transcript if t["from"] == "contact"] == ["Maria Silva"]
        problem(acme.post("/v1/executions", json=body, headers={"Idempotency-Key": "a b"}), 422)


def test_a_keyed_start_whose_answer_was_not_kept_is_found_again(api: Api) -> None:
    """The answer to a keyed start is kept after the start commits; when the store fails
    in between (here: the kept answers deleted, as if their write had failed), a retry
    with the same key gets its own execution back: not 409 (its own execution keeps the
    conversation busy), and with ``replace`` it does not cancel its own execution."""
    with api.client() as acme:
        for conversation, replace in (("conv-lost", False), ("conv-lost-r", True)):
            key = {"Idempotency-Key": f"lost-answer-{conversation}"}
            body = start_body(conversation, replace=replace)
            first = acme.post("/v1/executions", json=body, headers=key)
            assert first.status_code == 201
            eid = first.json()["executionId"]
            with sqlite3.connect(api.store.removeprefix("sqlite:///")) as conn:
                conn.execute("DELETE FROM idempotency")
            retried = acme.post("/v1/executions", json=body, headers=key)
            assert retried.status_code == 201, retried.text
            assert retried.json()["executionId"] == eid
            assert acme.get(f"/v1/executions/{eid}").json()["status"] != "cancelled"
            listed = acme.get("/v1/executions", params={"conversationId": conversation})
            assert [e["executionId"] for e in listed.json()["executions"]] == [eid]
            # another key is another request: busy, as before
            other = acme.post(
                "/v1/executions", json=start_body(conversation), headers={"Idempotency-Key": "x"}
            )
            assert problem(other, 409)["executionId"] == eid
            with sqlite3.connect(api.store.removeprefix("sqlite:///")) as conn:
                conn.execute("DELETE FROM idempotency")


def test_a_busy_conversation_is_409_unless_replaced(api: Api) -> None:
    with api.client() as acme:
        first = acme.post("/v1/executions", json=start_body("conv-b")).json()
        busy = problem(acme.post("/v1/executions", json=start_body("conv-b")), 409)
        assert busy["type"] == "urn:trilha:problem:conversation_busy"
        assert busy["executionId"] == first["executionId"]
        assert busy["currentStatus"] in {"running", "waiting_input"}
        second = acme.post("/v1/executions", json=start_body("conv-b", replace=True))
        assert second.status_code == 201
        assert second.json()["executionId"] != first["executionId"]
        old = acme.get(f"/v1/executions/{first['executionId']}").json()
        assert old["status"] == "cancelled" and old["outcome"] == "cancelled"
        assert second.json()["executionId"] in old["history"][-1]["reason"]
        # another institution's conversation of the same id is another conversation
        with api.client("beta_operator") as beta:
            assert beta.post("/v1/executions", json=start_body("conv-b")).status_code == 201


def test_starting_refuses_bad_flows_and_foreign_institutions(api: Api) -> None:
    beta_id = api.institutions["beta"]
    with api.client() as acme, api.client("admin") as admin, api.client("acme_viewer") as viewer:
        assert problem(acme.post("/v1/executions", json=start_body("x", "nope")), 404)
        problem(acme.post("/v1/executions", json=start_body("x", flowVersion=99)), 404)
        problem(acme.post("/v1/executions", json=start_body("x", institutionId=beta_id)), 404)
        problem(acme.post("/v1/executions", json={"flowId": "onboarding"}), 422)
        problem(acme.post("/v1/executions", json=start_body("x", unknown=1)), 422)
        problem(acme.post("/v1/executions", json=start_body("x", conversationId="")), 422)
        problem(viewer.post("/v1/executions", json=start_body("x")), 403)
        problem(admin.post("/v1/executions", json=start_body("x")), 422)
        made = admin.post("/v1/executions", json=start_body("x", institutionId=beta_id))
        assert made.status_code == 201 and made.json()["institutionId"] == beta_id
        # an institution's own flow hides the shared one of that name
        own = {**WAITS, "id": "onboarding"}
        assert acme.put("/v1/flows/onboarding", json=own).status_code == 201
        mine = acme.post("/v1/executions", json=start_body("y")).json()
        assert mine["flowId"] == f"{api.institutions['acme']}/onboarding"
        assert mine["currentNodeId"] == "ask"


def test_listing_pages_filters_and_tenancy(own_api: Api) -> None:
    """Cursor pages over more executions than a page hold each one once, newest first;
    filters narrow; another institution's executions are never listed (a server of its
    own: an admin's listing of every institution is exact)."""
    api = own_api
    with api.client() as acme, api.client("beta_operator") as beta:
        assert acme.put("/v1/flows/waits", json=WAITS).status_code == 201
        made = [
            acme.post(
                "/v1/executions",
                json={**start_body(f"page-{n}", "waits"), "contactId": f"k{n % 3}"},
            ).json()["executionId"]
            for n in range(23)
        ]
        beta.post("/v1/executions", json=start_body("page-beta"))
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 5, "flowId": "waits"}
            if cursor:
                params["cursor"] = cursor
            page = ExecutionPage.model_validate(acme.get("/v1/executions", params=params).json())
            pages += 1
            seen += [e.execution_id for e in page.executions]
            assert all(e.institution_id == "acme" for e in page.executions)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == 5 and len(seen) == len(set(seen)) == 23
        assert seen == list(reversed(made))  # newest first, no gap, no repeat

        k1 = acme.get("/v1/executions", params={"contactId": "k1", "limit": 100}).json()
        assert len(k1["executions"]) == 8 and k1["nextCursor"] is None
        one = acme.get("/v1/executions", params={"conversationId": "page-7"}).json()
        assert [e["executionId"] for e in one["executions"]] == [made[7]]
        until(
            lambda: (
                len(
                    acme.get(
                        "/v1/executions",
                        params={"status": "waiting_input", "flowId": "waits", "limit": 100},
                    ).json()["executions"]
                )
                == 23
            ),
            what="every execution waiting",
        )
        assert acme.get("/v1/executions", params={"status": "completed"}).json()["executions"] == []
        stuck = acme.get("/v1/executions", params={"stuck": "true"}).json()
        assert stuck["executions"] == []  # every one waits on something with a due time
        everything = acme.get("/v1/executions", params={"limit": 500}).json()["executions"]
        assert {e["institutionId"] for e in everything} == {"acme"}
        problem(acme.get("/v1/executions", params={"cursor": "not-a-cursor"}), 422)
        problem(acme.get("/v1/executions", params={"status": "asleep"}), 422)
        problem(acme.get("/v1/executions", params={"limit": 0}), 422)
        problem(acme.get("/v1/executions", params={"institutionId": "beta"}), 404)
        with api.client("admin") as admin:
            both = admin.get("/v1/executions", params={"limit": 500}).json()["executions"]
            assert {e["institutionId"] for e in both} == {"acme", "beta"}
            only = admin.get("/v1/executions", params={"institutionId": "beta"}).json()
            assert {e["institutionId"] for e in only["executions"]} == {"beta"}


def test_a_foreign_key_finds_nothing_on_every_route(api: Api) -> None:
    """Another institution's execution and conversation are absent (404), never 403."""
    with api.client() as acme, api.client("beta_operator") as beta:
        eid = acme.post("/v1/executions", json=start_body("conv-t")).json()["executionId"]
        until(lambda: bot_said(acme, eid, "full name"), what="the question")
        for suffix in ("", "/history", "/steps", "/logs", "/transcript"):
            body = problem(beta.get(f"/v1/executions/{eid}{suffix}"), 404)
            assert body["detail"] == f"no execution '{eid}'"
            problem(beta.get(f"/v1/executions/missing{suffix}"), 404)
        for action in ("pause", "resume", "cancel", "advance", "retry"):
            problem(beta.post(f"/v1/executions/{eid}/{action}"), 404)
        problem(beta.patch(f"/v1/executions/{eid}/variables", json={"set": {"x": 1}}), 404)
        # a bulk action: acme's job is absent to beta, and beta's acts on beta's alone
        bulk = {"action": "cancel", "filter": {"conversationId": "conv-t"}}
        acme_job = acme.post("/v1/executions/bulk", json={**bulk, "action": "pause"})
        assert acme_job.status_code == 202, acme_job.text
        problem(beta.get(f"/v1/executions/bulk/{acme_job.json()['jobId']}"), 404)
        beta_job = beta.post("/v1/executions/bulk", json=bulk)
        assert beta_job.status_code == 202 and beta_job.json()["total"] == 0, beta_job.text
        until(
            lambda: (
                acme.get(f"/v1/executions/bulk/{acme_job.json()['jobId']}").json()["status"]
                == "completed"
            ),
            what="acme's job",
        )
        assert status_of(acme, eid) == "paused"  # acme's own job paused it
        assert acme.post(f"/v1/executions/{eid}/resume").status_code == 200
        message = {"messageId": "t-1", "contactId": "c", "text": "hi"}
        problem(beta.post("/v1/conversations/conv-t/messages", json=message), 404)
        assert beta.get("/v1/executions", params={"conversationId": "conv-t"}).json() == {
            "executions": [],
            "nextCursor": None,
        }
        assert status_of(acme, eid) == "waiting_input"  # untouched by all of that
        with httpx.Client(base_url=api.url) as anonymous:
            problem(anonymous.get(f"/v1/executions/{eid}"), 401)
            problem(anonymous.post("/v1/conversations/conv-t/messages", json=message), 401)


def test_openapi_documents_the_problems(api: Api) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    start = paths["/v1/executions"]["post"]
    assert {"201", "401", "403", "404", "409", "422", "429", "503"} <= set(start["responses"])
    assert "application/problem+json" in start["responses"]["409"]["content"]
    assert any(p["name"] == "Idempotency-Key" for p in start["parameters"])
    message = paths["/v1/conversations/{conversationId}/messages"]["post"]
    assert {"202", "401", "403", "404", "422", "429", "503"} <= set(message["responses"])
    for suffix in ("", "/history", "/steps", "/logs", "/transcript"):
        responses = paths[f"/v1/executions/{{executionId}}{suffix}"]["get"]["responses"]
        assert {"200", "401", "404", "429", "503"} <= set(responses)
    for action in ("pause", "resume", "cancel", "advance", "retry"):
        responses = paths[f"/v1/executions/{{executionId}}/{action}"]["post"]["responses"]
        assert {"200", "401", "403", "404", "409", "422", "429", "503"} <= set(responses)
    assert "409" in paths["/v1/executions/{executionId}/variables"]["patch"]["responses"]


@pytest.mark.slow
def test_a_full_queue_refuses_new_executions_but_not_replies(cli: Cli, tmp_path: Path) -> None:
    """Past ``api.max_queue_due`` starting answers 503 with Retry-After and starts
    nothing; messages for conversations already running are still accepted."""
    api = start_api(
        cli,
        tmp_path,
        "--workers",
        "0",
        "--flows",
        str(Path(__file__).resolve().parents[2] / "examples"),
        config='[channel]\nkind = "memory"\n[api]\nmax_queue_due = 1\n',
    )
    with api.client() as acme:
        started = []
        deadline = time.monotonic() + 20
        while True:
            answer = acme.post(
                "/v1/executions",
                json=start_body(f"q-{len(started)}"),
                headers={"Idempotency-Key": f"q-{len(started)}"},
            )
            if answer.status_code == 503:
                break
            assert answer.status_code == 201, answer.text
            started.append(answer.json()["executionId"])
            assert time.monotonic() < deadline, "the queue bound was never applied"
            time.sleep(0.3)  # past the server's short reuse of one queue reading
        refused = problem(answer, 503)
        assert refused["type"] == "urn:trilha:problem:overloaded"
        assert int(answer.headers["retry-after"]) >= 1
        assert len(started) == 2  # due 0, then 1 (not over the bound), then 2: refused
        # a retry of the refused start with its key is tried again, not replayed: still 503
        again = acme.post(
            "/v1/executions", json=start_body("q-2"), headers={"Idempotency-Key": "q-2"}
        )
        problem(again, 503)
        # and a replay of an accepted start is still answered
        replay = acme.post(
            "/v1/executions", json=start_body("q-0"), headers={"Idempotency-Key": "q-0"}
        )
        assert replay.status_code == 201 and replay.json()["executionId"] == started[0]
        listed = acme.get("/v1/executions").json()["executions"]
        assert sorted(e["executionId"] for e in listed) == sorted(started)
        reply = acme.post(
            "/v1/conversations/q-0/messages",
            json={"messageId": "r-1", "contactId": "c", "text": "Maria"},
        )
        assert reply.status_code == 202 and reply.json()["executionId"] == started[0]
