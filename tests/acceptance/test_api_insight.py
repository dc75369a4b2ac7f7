"""What the debugger reads, against a real ``trilha serve``: who the key is, counts per
state (per tenant), the alerts, the flow drawn as a graph, each variable's history,
the listing's ``withErrors``/``statusSince``/``contactMasked``, the controls a key may
use, and the debugger's own static files (CSP, client routes, no path traversal).

One server is shared by the module (starting one takes seconds); every test makes
its own executions and waits for them to settle before it counts anything.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, start_api
from trilha.api.routes.insight import AlertsOut, GraphOut, VariablesOut

pytestmark = pytest.mark.slow

STATES = [
    "running",
    "waiting_input",
    "waiting_delay",
    "recovering",
    "paused",
    "fallback",
    "degraded",
    "completed",
    "failed",
    "cancelled",
    "timeout",
]
OPERATIONS = [
    "pause", "resume", "cancel", "advance", "retry", "variables", "message", "handback"
]  # fmt: skip
HELD_ONLY = "only a conversation a person holds can be handed back"
READ_ONLY = {"allowed": False, "reason": "viewer keys may only read"}
RETRY_TAIL = "only a recovering execution waiting for its next attempt can be retried"
PHONE = "+5511987654321"
DEBUGGER = Path(__file__).resolve().parents[2] / "src" / "trilha" / "debugger"
CSP = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

BROKEN = {
    "id": "broken",
    "start": "lookup",
    "nodes": [
        {
            "id": "lookup",
            "type": "http",
            "dependency": "crm",
            "url": "/customer",
            "retry": {"maxAttempts": 1},
            "next": "bye",
        },
        {"id": "bye", "type": "end"},
    ],
}
QUICK = {
    "id": "quick",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye"},
    ],
}
ONBOARDING_NODES = {
    "welcome",
    "ask_name",
    "ask_cpf",
    "ask_email",
    "confirm",
    "check",
    "mark_done",
    "bye",
    "give_up",
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The examples as shared flows, a ``crm`` dependency nothing listens on, and the
    acme flows ``broken`` (calls the CRM, fails at once) and ``quick`` (completes)."""
    tmp = tmp_path_factory.mktemp("insight")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    cli = Cli(tmp, env)
    config = (
        '[channel]\nkind = "memory"\n'
        f'[dependencies.crm]\nbase_url = "http://127.0.0.1:{closed_port()}"\n'
        'institutions = ["acme"]\n'
    )
    api = start_api(cli, tmp, "--flows", str(EXAMPLES), config=config)
    try:
        with api.client() as acme:
            for flow in (BROKEN, QUICK):
                put = acme.put(f"/v1/flows/{flow['id']}", json=flow)
                assert put.status_code == 201, put.text
        yield api
    finally:
        for proc in cli.spawned:  # only the processes this module started
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


# --------------------------------------------------------------------------- helpers

_conversations = iter(range(1, 1_000_000))


def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and {"type", "title", "detail"} <= set(body)
    return body


def key_id(api: Api, name: str) -> str:
    return api.keys[name].split("_")[1]


def view(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    got = client.get(f"/v1/executions/{execution_id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def start(
    client: httpx.Client,
    flow: str = "onboarding",
    *,
    settle: str = "waiting_input",
    contact: str = "contact-1",
    institution: str | None = None,
) -> str:
    """Start ``flow`` in a new conversation and wait until it is in ``settle``."""
    body = {"flowId": flow, "conversationId": f"ins-{next(_conversations)}", "contactId": contact}
    if institution is not None:
        body["institutionId"] = institution
    started = client.post("/v1/executions", json=body)
    assert started.status_code == 201, started.text
    eid: str = started.json()["executionId"]
    until(lambda: view(client, eid)["status"] == settle, what=f"{flow} to be {settle}")
    return eid


def counts(client: httpx.Client, **params: str) -> dict[str, Any]:
    got = client.get("/v1/executions/counts", params=params)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    assert list(body["counts"]) == STATES  # every state, zeros included
    assert body["total"] == sum(body["counts"].values())
    return body


def listed(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = client.get(
            "/v1/executions",
            params={**params, "limit": "200", **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        found += page.json()["executions"]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return found


def by_status(executions: list[dict[str, Any]]) -> dict[str, int]:
    tally = dict.fromkeys(STATES, 0)
    for ex in executions:
        tally[ex["status"]] += 1
    return tally


# --------------------------------------------------------------------------- /v1/me


def test_me_per_key(served: Api) -> None:
    for name, institution, role in (
        ("acme_operator", "acme", "operator"),
        ("acme_viewer", "acme", "viewer"),
        ("beta_operator", "beta", "operator"),
        ("admin", "ops", "admin"),
    ):
        with served.client(name) as client:
            got = client.get("/v1/me")
            assert got.status_code == 200, got.text
            assert got.json() == {
                "keyId": key_id(served, name),
                "institutionId": institution,
                "role": role,
            }
    with served.client(None) as anonymous:
        problem(anonymous.get("/v1/me"), 401)
        problem(anonymous.get("/v1/executions/counts"), 401)
        problem(anonymous.get("/v1/alerts"), 401)


# --------------------------------------------------------------------------- counts


def test_counts_per_tenant_and_for_an_admin(served: Api) -> None:
    with (
        served.client() as acme,
        served.client("acme_viewer") as viewer,
        served.client("beta_operator") as beta,
        served.client("admin") as admin,
    ):
        acme_before, beta_before = counts(acme), counts(beta)
        # what the counts say is what the listing shows, state by state
        assert acme_before["counts"] == by_status(listed(acme))
        assert beta_before["counts"] == by_status(listed(beta))
        start(acme)
        start(acme)
        start(acme, "broken", settle="failed")
        acme_after = counts(acme)
        assert acme_after["total"] == acme_before["total"] + 3
        assert acme_after["counts"] == acme_before["counts"] | {
            "waiting_input": acme_before["counts"]["waiting_input"] + 2,
            "failed": acme_before["counts"]["failed"] + 1,
        }
        assert counts(viewer) == acme_after  # the same tenant, whatever the role
        assert counts(beta) == beta_before  # acme's executions are not beta's
        start(beta)
        beta_after = counts(beta)
        assert beta_after["total"] == beta_before["total"] + 1
        assert beta_after["counts"]["waiting_input"] == beta_before["counts"]["waiting_input"] + 1
        assert counts(acme) == acme_after
        assert acme_after["counts"] == by_status(listed(acme))
        assert beta_after["counts"] == by_status(listed(beta))

        # an admin counts every institution, or the one it names
        everything = counts(admin)
        assert everything["counts"] == by_status(listed(admin))
        assert counts(admin, institutionId="acme") == acme_after
        assert counts(admin, institutionId="beta") == beta_after
        nobody = counts(admin, institutionId="nobody")
        assert nobody == {
            "counts": dict.fromkeys(STATES, 0),
            "outcomes": dict.fromkeys(nobody["outcomes"], 0),
            "total": 0,
        }
        assert set(nobody["outcomes"]) >= {"completed", "escalated", "failed", "timeout"}
        assert everything["total"] == acme_after["total"] + beta_after["total"]
        # a tenant may name itself, never another
        assert counts(acme, institutionId="acme") == acme_after
        problem(acme.get("/v1/executions/counts", params={"institutionId": "beta"}), 404)
        problem(acme.get("/v1/executions/counts", params={"institutionId": "a b"}), 422)


# --------------------------------------------------------------------------- alerts


def test_alerts_answer_a_list(served: Api) -> None:
    for name in ("acme_viewer", "beta_operator", "admin"):
        with served.client(name) as client:
            got = client.get("/v1/alerts")
            assert got.status_code == 200, got.text
            body = got.json()
            assert list(body) == ["alerts"] and isinstance(body["alerts"], list)
            AlertsOut.model_validate(body)
            for alert in body["alerts"]:
                assert alert["status"] in {"inactive", "pending", "firing", "resolved"}


# --------------------------------------------------------------------------- graph


def test_graph_of_an_execution(served: Api) -> None:
    with (
        served.client() as acme,
        served.client("acme_viewer") as viewer,
        served.client("beta_operator") as beta,
        served.client("admin") as admin,
    ):
        eid = start(acme)
        got = viewer.get(f"/v1/executions/{eid}/graph")
        assert got.status_code == 200, got.text
        graph = got.json()
        GraphOut.model_validate(graph)
        assert (graph["executionId"], graph["flowId"], graph["flowVersion"], graph["start"]) == (
            eid,
            "onboarding",
            1,
            "welcome",
        )
        assert {n["id"] for n in graph["nodes"]} == ONBOARDING_NODES
        assert len(graph["nodes"]) == len(ONBOARDING_NODES)
        types = {n["id"]: n["type"] for n in graph["nodes"]}
        assert types["check"] == "condition" and types["give_up"] == "handoff"
        welcome = next(n for n in graph["nodes"] if n["id"] == "welcome")
        assert welcome["y"] == min(n["y"] for n in graph["nodes"])
        for n in graph["nodes"]:
            assert n["x"] >= 0 and n["x"] + n["width"] <= graph["width"]
            assert n["y"] >= 0 and n["y"] + n["height"] <= graph["height"]
        edges = {(e["from"], e["to"], e["field"]): e for e in graph["edges"]}
        assert len(edges) == len(graph["edges"]) == 9
        branch = edges[("check", "mark_done", "branches[0].next")]
        assert (branch["kind"], branch["label"], branch["back"]) == (
            "branch",
            "confirmed == 'yes'",
            False,
        )
        assert edges[("ask_cpf", "give_up", "onInvalid")]["kind"] == "invalid"
        assert [k for k, e in edges.items() if e["back"]] == [("check", "ask_name", "default")]
        assert admin.get(f"/v1/executions/{eid}/graph").json() == graph
        # another institution's execution does not exist for a key
        problem(beta.get(f"/v1/executions/{eid}/graph"), 404)
        problem(beta.get(f"/v1/executions/{eid}/variables"), 404)
        problem(acme.get("/v1/executions/nope123/graph"), 404)


# --------------------------------------------------------------------------- variables


def test_variable_history_after_a_reply_and_a_patch(served: Api) -> None:
    operator_id = key_id(served, "acme_operator")
    with served.client() as acme, served.client("acme_viewer") as viewer:
        eid = start(acme)
        conversation = view(acme, eid)["conversationId"]
        before = viewer.get(f"/v1/executions/{eid}/variables")
        assert before.status_code == 200, before.text
        assert before.json() == {"executionId": eid, "variables": {}, "history": {}}

        reply = {"messageId": f"m-{eid}", "contactId": "contact-1", "text": "Maria Silva"}
        sent = acme.post(f"/v1/conversations/{conversation}/messages", json=reply)
        assert sent.status_code == 202, sent.text
        until(lambda: view(acme, eid)["currentNodeId"] == "ask_cpf", what="the name applied")
        until(lambda: view(acme, eid)["status"] == "waiting_input", what="the CPF question")
        patched = acme.patch(
            f"/v1/executions/{eid}/variables",
            json={"set": {"crm.tier": "gold"}, "reason": "known customer"},
        )
        assert patched.status_code == 200, patched.text

        got = viewer.get(f"/v1/executions/{eid}/variables")
        assert got.status_code == 200, got.text
        body = got.json()
        VariablesOut.model_validate(body)
        assert body["variables"] == {"contact": {"name": "Maria Silva"}, "crm": {"tier": "gold"}}
        assert set(body["history"]) == {"contact", "crm"}

        # the step that applied the reply, from the timeline
        steps = acme.get(f"/v1/executions/{eid}/steps").json()["steps"]
        answered = [s for s in steps if s["nodeId"] == "ask_name" and "Maria Silva" in str(s)]
        assert len(answered) == 1
        (contact,) = body["history"]["contact"]
        assert {k: contact[k] for k in ("value", "by", "seq", "nodeId", "actor", "removed")} == {
            "value": {"name": "Maria Silva"},
            "by": "step",
            "seq": answered[0]["seq"],
            "nodeId": "ask_name",
            "actor": None,
            "removed": False,
        }
        assert contact["at"] is not None and contact["at"].endswith("Z")

        (crm,) = body["history"]["crm"]
        assert {k: crm[k] for k in ("value", "by", "seq", "nodeId", "actor", "removed")} == {
            "value": {"tier": "gold"},
            "by": "operator",
            "seq": None,
            "nodeId": None,
            "actor": f"key:{operator_id}",
            "removed": False,
        }
        audit = acme.get(f"/v1/executions/{eid}/history").json()["audit"]
        assert crm["at"] == next(a["at"] for a in audit if a["operation"] == "set_variables")

        # an unset is a removal, credited to the operator too
        unset = acme.patch(f"/v1/executions/{eid}/variables", json={"unset": ["contact.name"]})
        assert unset.status_code == 200, unset.text
        after = viewer.get(f"/v1/executions/{eid}/variables").json()
        assert after["variables"] == {"contact": {}, "crm": {"tier": "gold"}}
        assert [
            (c["by"], c["value"], c["removed"], c["actor"]) for c in after["history"]["contact"]
        ] == [
            ("step", {"name": "Maria Silva"}, False, None),
            ("operator", {}, False, f"key:{operator_id}"),
        ]
        gone = acme.patch(f"/v1/executions/{eid}/variables", json={"unset": ["contact"]})
        assert gone.status_code == 200, gone.text
        history = viewer.get(f"/v1/executions/{eid}/variables").json()["history"]
        assert [(c["by"], c["value"], c["removed"], c["actor"]) for c in history["contact"]] == [
            ("step", {"name": "Maria Silva"}, False, None),
            ("operator", None, True, f"key:{operator_id}"),
        ]
        assert history["crm"] == body["history"]["crm"]


def test_start_variables_are_the_first_entry(served: Api) -> None:
    with served.client() as acme:
        body = {
            "flowId": "onboarding",
            "conversationId": f"ins-{next(_conversations)}",
            "contactId": "contact-1",
            "variables": {"channel": "whatsapp"},
        }
        started = acme.post("/v1/executions", json=body)
        assert started.status_code == 201, started.text
        eid = started.json()["executionId"]
        until(lambda: view(acme, eid)["status"] == "waiting_input", what="the first question")
        history = acme.get(f"/v1/executions/{eid}/variables").json()["history"]
        ((entry,),) = history.values()
        assert list(history) == ["channel"]
        assert (entry["value"], entry["by"], entry["seq"], entry["at"]) == (
            "whatsapp",
            "start",
            None,
            view(acme, eid)["createdAt"],
        )


# --------------------------------------------------------------------------- listing


def test_with_errors_lists_the_failed_call_not_the_clean_one(served: Api) -> None:
    with served.client() as acme, served.client("beta_operator") as beta:
        clean = start(acme)
        failed = start(acme, "broken", settle="failed")
        assert view(acme, failed)["error"] is not None
        troubled = [e["executionId"] for e in listed(acme, withErrors="true")]
        assert failed in troubled and clean not in troubled
        for e in listed(acme, withErrors="true"):  # each had trouble: now, or on the way
            steps = acme.get(f"/v1/executions/{e['executionId']}/steps").json()["steps"]
            assert e["error"] is not None or any(s["error"] for s in steps), e
        for e in listed(acme):
            if e["executionId"] not in troubled:
                steps = acme.get(f"/v1/executions/{e['executionId']}/steps").json()["steps"]
                assert e["error"] is None and not any(s["error"] for s in steps), e
        everything = [e["executionId"] for e in listed(acme)]
        assert failed in everything and clean in everything
        assert [e["executionId"] for e in listed(acme, withErrors="false")] == everything
        only_failed = [e["executionId"] for e in listed(acme, withErrors="true", status="failed")]
        assert failed in only_failed
        assert only_failed == [e["executionId"] for e in listed(acme, status="failed")]
        waiting = [
            e["executionId"] for e in listed(acme, withErrors="true", status="waiting_input")
        ]
        assert clean not in waiting
        assert failed not in [e["executionId"] for e in listed(beta, withErrors="true")]
        # pages of one add up to the whole
        paged: list[str] = []
        params = {"withErrors": "true", "limit": "1"}
        while True:
            page = acme.get("/v1/executions", params=params).json()
            assert len(page["executions"]) == 1
            paged.append(page["executions"][0]["executionId"])
            if page["nextCursor"] is None:
                break
            params["cursor"] = page["nextCursor"]
        assert paged == troubled
        problem(acme.get("/v1/executions", params={"withErrors": "maybe"}), 422)


def test_status_since_changes_with_the_state(served: Api) -> None:
    with served.client() as acme:
        eid = start(acme)
        first = view(acme, eid)
        history = first["history"]
        assert first["statusSince"] == history[-1]["at"]
        assert (history[-1]["to"], history[-1]["from"]) == ("waiting_input", "running")
        (row,) = [e for e in listed(acme) if e["executionId"] == eid]
        assert row["statusSince"] == first["statusSince"]
        time.sleep(0.01)  # the server's clock moves on: the pause is later
        paused = acme.post(f"/v1/executions/{eid}/pause", json={"reason": "look"})
        assert paused.status_code == 200, paused.text
        later = view(acme, eid)
        assert later["status"] == "paused"
        assert later["statusSince"] == later["history"][-1]["at"] > first["statusSince"]
        (row,) = [e for e in listed(acme) if e["executionId"] == eid]
        assert row["statusSince"] == later["statusSince"]
        assert paused.json()["statusSince"] == later["statusSince"]


def test_contact_masked(served: Api) -> None:
    with served.client() as acme:
        eid = start(acme, contact=PHONE)
        summary = view(acme, eid)
        assert summary["contactId"] == PHONE
        assert summary["contactMasked"] == "+***********21"
        (row,) = [e for e in listed(acme, contactId=PHONE) if e["executionId"] == eid]
        assert (row["contactId"], row["contactMasked"]) == (PHONE, "+***********21")
        plain = start(acme, contact="contact-9")
        assert view(acme, plain)["contactMasked"] == "contact-9"


# --------------------------------------------------------------------------- controls


def test_controls_for_a_viewer_and_an_operator(served: Api) -> None:
    with served.client() as acme, served.client("acme_viewer") as viewer:
        eid = start(acme)
        assert view(viewer, eid)["controls"] == dict.fromkeys(OPERATIONS, READ_ONLY)
        assert view(acme, eid)["controls"] == {
            "pause": {"allowed": True, "reason": None},
            "resume": {"allowed": False, "reason": "it is waiting_input"},
            "cancel": {"allowed": True, "reason": None},
            "advance": {"allowed": True, "reason": None},
            "retry": {"allowed": False, "reason": f"it is waiting_input; {RETRY_TAIL}"},
            "variables": {"allowed": True, "reason": None},
            "message": {"allowed": True, "reason": None},
            "handback": {"allowed": False, "reason": f"it is waiting_input; {HELD_ONLY}"},
        }
        paused = acme.post(f"/v1/executions/{eid}/pause").json()
        assert paused["controls"]["pause"] == {"allowed": False, "reason": "it is paused"}
        assert paused["controls"]["resume"] == {"allowed": True, "reason": None}
        assert paused["controls"]["handback"] == {
            "allowed": False,
            "reason": f"it is paused (paused by an operator); {HELD_ONLY}",
        }
        assert view(viewer, eid)["controls"] == dict.fromkeys(OPERATIONS, READ_ONLY)
        # what the viewer's buttons say is what the server does
        problem(viewer.post(f"/v1/executions/{eid}/resume"), 403)


def test_controls_of_a_completed_execution(served: Api) -> None:
    with served.client() as acme, served.client("acme_viewer") as viewer:
        eid = start(acme, "quick", settle="completed")
        controls = view(acme, eid)["controls"]
        assert controls == {
            **{o: {"allowed": False, "reason": "it is completed"} for o in OPERATIONS},
            "retry": {
                "allowed": False,
                "reason": f"it is completed (it is final: start a new execution); {RETRY_TAIL}",
            },
        }
        assert view(viewer, eid)["controls"] == dict.fromkeys(OPERATIONS, READ_ONLY)
        # the server refuses each for the reason the button shows
        for action in ("pause", "resume", "cancel", "advance", "retry"):
            body = {"toNodeId": "bye"} if action == "advance" else None
            refused = problem(acme.post(f"/v1/executions/{eid}/{action}", json=body), 409)
            assert refused["detail"].endswith(controls[action]["reason"]), refused
            assert refused["currentStatus"] == "completed"
        refused = problem(
            acme.patch(f"/v1/executions/{eid}/variables", json={"set": {"a": 1}}), 409
        )
        assert refused["detail"].endswith(controls["variables"]["reason"])


# --------------------------------------------------------------------------- debugger


def raw_get(api: Api, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (no client-side dot-segment clean-up)."""
    where = urlsplit(api.url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def test_debugger_static_files(served: Api) -> None:
    index = (DEBUGGER / "index.html").read_bytes()
    with httpx.Client(base_url=served.url, timeout=10) as anonymous:
        root = anonymous.get("/debugger")
        assert root.status_code == 308 and root.headers["location"] == "/debugger/"
        page = anonymous.get("/debugger/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.content == index
        followed = anonymous.get("/debugger", follow_redirects=True)
        assert followed.status_code == 200 and followed.content == index
        # the page's own routes answer the page, which routes on the client
        for route in (
            "/debugger/executions/abc",
            "/debugger/executions/abc/steps",
            "/debugger/login",
        ):
            client_route = anonymous.get(route)
            assert client_route.status_code == 200, route
            assert client_route.content == index
            assert client_route.headers["content-security-policy"] == CSP
        script = anonymous.get("/debugger/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.content == (DEBUGGER / "app.js").read_bytes()
        assert script.headers["content-security-policy"] == CSP
        style = anonymous.get("/debugger/style.css")
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        missing = problem(anonymous.get("/debugger/nope.js"), 404)
        assert "nope.js" in missing["detail"]
        problem(anonymous.get("/debugger/executions/nope.css"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/debugger/../pyproject.toml",
        "/debugger/%2e%2e/pyproject.toml",
        "/debugger/%2E%2E/%2E%2E/pyproject.toml",
        "/debugger/..%2fpyproject.toml",
        "/debugger/..%2F..%2F..%2Fpyproject.toml",
        "/debugger/../__init__.py",
        "/debugger/%2e%2e/__init__.py",
        "/debugger/%2e%2e/api/app.py",
        "/debugger/../debugger/../../../pyproject.toml",
        "/debugger/..%5cpyproject.toml",
        "/debugger/%252e%252e/pyproject.toml",
    ],
)
def test_debugger_path_traversal_is_404(served: Api, path: str) -> None:
    status, headers, body = raw_get(served, path)
    assert status == 404, (path, status, body[:200])
    assert headers["content-type"].startswith("application/problem+json")
    assert b"[project]" not in body and b"import" not in body


@pytest.mark.parametrize(
    "path", ["/debugger/../../../../etc/passwd", "/debugger/%2e%2e/%2e%2e/%2e%2e/etc/hostname"]
)
def test_debugger_traversal_to_a_name_without_extension_serves_nothing_outside(
    served: Api, path: str
) -> None:
    """A name without an extension is a client route of the page: whatever dots it
    holds, the answer is the page's own index.html, never the file named."""
    status, _, body = raw_get(served, path)
    assert status in (200, 404)
    if status == 200:
        assert body == (DEBUGGER / "index.html").read_bytes()
    assert b"root:" not in body
