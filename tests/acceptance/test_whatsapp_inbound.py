"""Meta's webhook into a real ``trilha serve`` with ``[channel] kind = "whatsapp"``, its
Graph API a stand-in on 127.0.0.1 (``tests/graph_standin.py``), fed bodies shaped as
Meta's reference shows them and signed as Meta signs them: the subscription check, bad
and missing signatures (401, nothing stored), a contact's "oi" starting a flow through
a trigger and its next text answering the question, the same wamid twice answered
once, a photo whose URL is looked up, a contact's body waiting for its retry holding
that contact's later bodies back (not another contact's), statuses recorded as
delivery receipts, numbers and conversations of another institution never reached,
and a body stored but not yet processed when the server is killed, processed by the
next one."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import problem, until

import whatsapp_webhooks as wa
from conftest import Api, Cli, serve, start_api
from graph_standin import GraphStandIn, Refusal, graph_standin
from trilha.api.routes.executions import TranscriptOut

pytestmark = pytest.mark.slow

SECRET = "meta-app-secret"
TOKEN = "graph-token"
VERIFY = "verify-me-please"
ENV = {"WA_SECRET": SECRET, "WA_TOKEN": TOKEN}
#: acme's number is the documented example's; beta has one of its own
ACME_NUMBER = wa.PHONE_NUMBER_ID
BETA_NUMBER = "2000"
CONTACT = "5511987654321"
ASK = {
    "id": "wa_ask",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Tchau {{name}}"},
    ],
}  # fmt: skip
DOC = {
    "id": "wa_doc",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Mande a foto", "variable": "photo",
         "validate": {"kind": "media"}, "next": "bye"},
        {"id": "bye", "type": "end", "text": "Recebi {{photo.caption}}"},
    ],
}  # fmt: skip


def config(standin_url: str) -> str:
    return f"""[channel]
kind = "whatsapp"

[channel.whatsapp]
access_token = "${{WA_TOKEN}}"
app_secret = "${{WA_SECRET}}"
verify_token = "{VERIFY}"
api_base_url = "{standin_url}"
timeout_seconds = 2
numbers = [
    {{ phone_number_id = "{ACME_NUMBER}", institution = "acme" }},
    {{ phone_number_id = "{BETA_NUMBER}", institution = "beta" }},
]

[engine]
heartbeat_seconds = 0.2

[api]
rate_limit_per_second = 10000
rate_limit_burst = 10000

[[triggers]]
institution = "acme"
keywords = ["oi"]
flow_id = "wa_ask"

[[triggers]]
institution = "acme"
keywords = ["foto"]
flow_id = "wa_doc"
"""


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as made:
        yield made


@pytest.fixture
def served(cli: Cli, tmp_path: Path, standin: GraphStandIn) -> Api:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "wa_ask.json").write_text(json.dumps(ASK), encoding="utf-8")
    (flows / "wa_doc.json").write_text(json.dumps(DOC), encoding="utf-8")
    return start_api(cli, tmp_path, "--flows", str(flows), config=config(standin.url), env=ENV)


def post(api: Api, body: dict[str, Any] | bytes, *, secret: str | None = SECRET) -> httpx.Response:
    """POST a notification as Meta does: no API key, signed with ``secret``."""
    raw = body if isinstance(body, bytes) else wa.encode(body)
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = wa.signature(secret, raw)
    return httpx.post(f"{api.url}/v1/channels/whatsapp/webhook", content=raw, headers=headers)


def says(*messages: dict[str, Any], number: str = ACME_NUMBER, contact: str = CONTACT) -> bytes:
    return wa.encode(
        wa.notification(
            wa.value(
                # sent by the contact, as Meta writes it: ``from`` is the profile's wa_id
                messages=[{**m, "from": contact} for m in messages],
                phone_number_id=number,
                wa_id=contact,
            )
        )
    )


def stored(api: Api) -> list[tuple[int, str]]:
    """The webhook bodies in the server's SQLite file: (id, status)."""
    path = api.store.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as conn:
        rows = conn.execute("SELECT id, status FROM channel_webhooks ORDER BY id").fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def conversation(number: str = ACME_NUMBER, contact: str = CONTACT) -> str:
    return f"wa:{number}:{contact}"


def executions(client: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/executions", params={"conversationId": conversation_id})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["executions"]
    return found


def transcript(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/executions/{execution_id}/transcript")
    assert answer.status_code == 200, answer.text
    TranscriptOut.model_validate(answer.json())
    items: list[dict[str, Any]] = answer.json()["transcript"]
    return items


def status_of(client: httpx.Client, execution_id: str) -> str:
    found: str = client.get(f"/v1/executions/{execution_id}").json()["status"]
    return found


def started(api: Api, client: httpx.Client, contact: str = CONTACT, word: str = "oi") -> str:
    """Send "oi" (or "foto") from ``contact`` to acme's number: the trigger starts wa_ask
    (wa_doc), which waits for the name (a photo); its execution id."""
    hello = says(wa.text(f"wamid.{word}-{contact}", word), contact=contact)
    assert post(api, hello).status_code == 200
    (execution,) = until(
        lambda: executions(client, conversation(contact=contact)), what="the triggered start"
    )
    eid: str = execution["executionId"]
    until(lambda: status_of(client, eid) == "waiting_input", what="the question")
    return eid


def test_verification_and_signatures(served: Api) -> None:
    """The subscription check echoes the challenge for the verify token only; a body
    without a valid signature is 401 and nothing is stored; a signed one is kept."""
    url = f"{served.url}/v1/channels/whatsapp/webhook"
    good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    answer = httpx.get(url, params=good)
    assert answer.status_code == 200 and answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")
    problem(httpx.get(url, params={**good, "hub.verify_token": "guess"}), 403)
    problem(httpx.get(url, params={**good, "hub.mode": "unsubscribe"}), 403)
    problem(httpx.get(url, params={"hub.mode": "subscribe", "hub.challenge": "1"}), 403)

    body = says(wa.text("wamid.sig", "oi"))
    assert problem(post(served, body, secret=None), 401)["type"].endswith("invalid_signature")
    problem(post(served, body, secret="not-the-app-secret"), 401)
    forged = httpx.post(
        url,
        content=body.replace(b"oi", b"OI"),
        headers={"X-Hub-Signature-256": wa.signature(SECRET, body)},
    )
    problem(forged, 401)
    long_header = {"X-Hub-Signature-256": "sha256=" + "0" * 5_000}
    problem(httpx.post(url, content=body, headers=long_header), 401)  # not a 422
    assert stored(served) == []
    unparsed = problem(post(served, b"{not json"), 400)["detail"]
    assert unparsed.endswith("double quotes at line 1, column 2 (char 1)"), unparsed
    problem(post(served, b"[" * 100_000 + b"]" * 100_000), 400)  # past the parser's depth
    many = [wa.text(f"wamid.{i}", "x") for i in range(1_001)]
    too_many = problem(post(served, says(*many)), 413)
    assert "at most 1000" in too_many["detail"]
    huge = says(wa.text("wamid.huge", "x" * 1_100_000))  # over [api] max_body_bytes
    assert "1048576 bytes" in problem(post(served, huge), 413)["detail"]
    assert stored(served) == []
    assert post(served, body).json() == {"received": True}
    assert len(stored(served)) == 1


def test_a_text_reaches_the_waiting_question_once(served: Api) -> None:
    """ "oi" starts the flow through acme's trigger; the name answers its question; the
    same wamid again, alone or in Meta's retry of the same body, changes nothing."""
    with served.client() as acme:
        eid = started(served, acme)
        answer = says(wa.text("wamid.name-1", "Ana Souza"))
        assert post(served, answer).status_code == 200
        assert post(served, answer).status_code == 200  # Meta's retry: the same bytes
        later = says(wa.text("wamid.name-1", "Ana Souza", timestamp="1739321999"))
        assert post(served, later).status_code == 200  # other bytes, the same wamid
        until(lambda: status_of(acme, eid) == "completed", what="the end")
        until(lambda: all(s == "done" for _, s in stored(served)), what="bodies processed")
        said = [(t["from"], t["text"]) for t in transcript(acme, eid)]
        assert said == [
            ("contact", "oi"),
            ("bot", "Seu nome?"),
            ("contact", "Ana Souza"),
            ("bot", "Tchau Ana Souza"),
        ]
        assert len(stored(served)) == 4
        assert [e["executionId"] for e in executions(acme, conversation())] == [eid]
        variables = acme.get(f"/v1/executions/{eid}/variables").json()["variables"]
        assert variables["contact"] == {"name": wa.PROFILE_NAME, "waId": CONTACT}


def test_a_photo_has_its_url_looked_up(served: Api, standin: GraphStandIn) -> None:
    """An image's media id becomes the URL the Graph API gives, with its type and the
    caption; the lookup carries the number's token."""
    standin.media["1001"] = {
        "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1001",
        "mime_type": "image/jpeg",
        "sha256": "7xG5D+lVw4yOr3KlGGDjyqE0hQZ6NjoUuQ1Wk63ZmE8=",
        "file_size": "303833",
    }
    with served.client() as acme:
        eid = started(served, acme, word="foto")
        assert post(served, says(wa.image("wamid.photo", "1001", caption="eu"))).status_code == 200
        until(lambda: status_of(acme, eid) == "completed", what="the end")
        trigger, contact = [t for t in transcript(acme, eid) if t["from"] == "contact"]
        assert trigger["text"] == "foto"
        assert [contact] == [
            {
                "from": "contact",
                "text": "eu",
                "at": contact["at"],
                "content": {
                    "type": "media",
                    "media": {
                        "kind": "image",
                        "url": standin.media["1001"]["url"],
                        "mimeType": "image/jpeg",
                        "caption": "eu",
                    },
                },
            }
        ]
    lookups = [r for r in standin.requests if r.method == "GET"]
    assert [r.path.rsplit("/", 1)[-1] for r in lookups] == ["1001"]
    assert lookups[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert lookups[0].query == {"phone_number_id": [ACME_NUMBER]}


def test_a_lookup_that_fails_is_retried_from_where_it_stopped(
    served: Api, standin: GraphStandIn
) -> None:
    """The Graph API too slow for the lookup: the body stops at the photo and is tried
    again with backoff; the message before it, delivered already, is not delivered
    twice, and the photo lands once the Graph API answers."""
    standin.media["3003"] = {"url": "https://lookaside.example.com/3003", "mime_type": "image/png"}
    other = "5511911112222"
    with served.client() as acme:
        asks = started(served, acme, contact=other)
        photo = started(served, acme, word="foto")
        standin.delay = 3.0  # past timeout_seconds: the lookup times out
        body = wa.notification(
            wa.value(messages=[wa.text("wamid.first", "Bia", wa_id=other)], wa_id=other),
            wa.value(
                messages=[wa.image("wamid.second", "3003", caption="depois", wa_id=CONTACT)],
                wa_id=CONTACT,
            ),
        )
        assert post(served, body).status_code == 200
        until(lambda: status_of(acme, asks) == "completed", what="the first message")
        until(
            lambda: len([r for r in standin.requests if r.method == "GET"]) >= 2,
            what="a second lookup",
        )
        assert status_of(acme, photo) == "waiting_input"
        standin.delay = 0.0
        until(lambda: status_of(acme, photo) == "completed", what="the photo after the retry")
        assert [t["text"] for t in transcript(acme, asks)] == [
            "oi",
            "Seu nome?",
            "Bia",
            "Tchau Bia",
        ]
        assert [t["text"] for t in transcript(acme, photo)][-2:] == ["depois", "Recebi depois"]
    _, output = served.stop()
    assert "whatsapp.webhook_retry" in output


def test_a_contacts_bodies_wait_for_the_one_retrying(served: Api, standin: GraphStandIn) -> None:
    """The contact's photo cannot be looked up (5xx), so its body waits for a retry;
    the contact's next text, posted meanwhile, waits for it and is not taken as the
    answer to the photo question, while another contact's "oi" starts its flow at
    once. Once the lookup answers, the photo answers the question, then the text comes
    (to a finished conversation, through the triggers: no keyword, dropped). The
    route stored each body with its conversation."""
    standin.media["4004"] = {"url": "https://lookaside.example.com/4004", "mime_type": "image/png"}
    standin.refuse_media["4004"] = Refusal(131000, 500)
    other = "5511933334444"
    with served.client() as acme:
        photo = started(served, acme, word="foto")
        image = wa.image("wamid.photo", "4004", caption="primeiro", wa_id=CONTACT)
        assert post(served, says(image)).status_code == 200
        until(
            lambda: len([r for r in standin.requests if r.method == "GET"]) >= 1,
            what="the refused lookup",
        )
        assert (
            post(served, says(wa.text("wamid.after", "depois", wa_id=CONTACT))).status_code == 200
        )
        asks = started(served, acme, contact=other)  # not held back
        until(
            lambda: len([r for r in standin.requests if r.method == "GET"]) >= 3,
            what="lookups retried after the text arrived",
        )
        assert status_of(acme, photo) == "waiting_input"
        assert "depois" not in [t["text"] for t in transcript(acme, photo)]
        del standin.refuse_media["4004"]
        until(lambda: status_of(acme, photo) == "completed", what="the photo after the retry")
        until(lambda: {s for _, s in stored(served)} == {"done"}, what="every body done")
        said = [t["text"] for t in transcript(acme, photo)]
        # the photo answered the question; the text came after it (to the flow's end,
        # when it arrived before the execution completed), never before it
        assert "Recebi primeiro" in said and "depois" not in said[: said.index("primeiro")]
        assert status_of(acme, asks) == "waiting_input"
    path = served.store.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as conn:
        keys = {
            str(r[0])
            for r in conn.execute("SELECT conversation_key FROM channel_webhook_keys").fetchall()
        }
    assert keys == {f"{ACME_NUMBER}:{CONTACT}", f"{ACME_NUMBER}:{other}"}
    _, output = served.stop()
    assert "whatsapp.webhook_retry" in output


def outbox_keys(api: Api, execution_id: str) -> list[str]:
    path = api.store.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as conn:
        rows = conn.execute(
            "SELECT idempotency_key FROM outbox WHERE execution_id = ? ORDER BY id",
            (execution_id,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_statuses_become_delivery_receipts(served: Api) -> None:
    """sent, delivered and read move the question's ticks forward; a failed one keeps
    Meta's code and title; a status without the key, or with a key of no message of
    that conversation, records nothing."""
    with served.client() as acme:
        eid = started(served, acme)
        (key,) = until(lambda: outbox_keys(served, eid), what="the question in the outbox")
        statuses = [
            wa.status("wamid.q", "sent", key=key, recipient=CONTACT, timestamp="1767261600"),
            wa.status("wamid.q", "delivered", key=key, recipient=CONTACT, timestamp="1767261601"),
            wa.status("wamid.q", "read", key=key, recipient=CONTACT, timestamp="1767261602"),
            wa.status("wamid.q", "read", key=None, recipient=CONTACT),
            wa.status("wamid.x", "read", key="not-a-key", recipient=CONTACT),
            wa.status("wamid.q", "read", key=key, recipient="5511000000000"),
        ]
        body = wa.notification(wa.value(statuses=statuses))
        assert post(served, body).status_code == 200
        until(lambda: transcript(acme, eid)[1].get("delivery"), what="the receipts")
        until(lambda: stored(served)[-1][1] == "done", what="the body processed")
        (question,) = [t for t in transcript(acme, eid) if t["from"] == "bot"]
        assert question["delivery"] == {"status": "read", "at": "2026-01-01T10:00:02.000Z"}
        logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        lines = [r["context"]["metadata"] for r in logs if r["message"] == "message.status"]
        assert [(c["status"], c["advanced"]) for c in lines] == [
            ("sent", True),
            ("delivered", True),
            ("read", True),
        ]

        assert post(served, says(wa.text("wamid.name", "Bia"))).status_code == 200
        until(lambda: len(outbox_keys(served, eid)) == 2, what="the goodbye")
        goodbye = outbox_keys(served, eid)[1]
        failed = wa.status(
            "wamid.bye", "failed", key=goodbye, recipient=CONTACT, errors=wa.undeliverable()
        )
        assert post(served, wa.notification(wa.value(statuses=[failed]))).status_code == 200
        until(
            lambda: (
                transcript(acme, eid)[-1].get("delivery", {}) is not None
                and (transcript(acme, eid)[-1].get("delivery") or {}).get("status") == "failed"
            ),
            what="the failure",
        )
        assert transcript(acme, eid)[-1]["delivery"]["error"] == (
            "131026: Message undeliverable (Message Undeliverable.)"
        )


def test_another_institution_is_never_reached(served: Api) -> None:
    """The same contact writing to beta's number is beta's conversation (no trigger
    there: dropped, not stored), never acme's; a status through beta's number naming
    acme's message records nothing; an unknown number reaches nobody."""
    with served.client() as acme, served.client("beta_operator") as beta:
        eid = started(served, acme)
        (key,) = until(lambda: outbox_keys(served, eid), what="the question in the outbox")
        to_beta = says(wa.text("wamid.beta-1", "Carla"), number=BETA_NUMBER)
        unknown = says(wa.text("wamid.nobody", "Carla"), number="777")
        stolen = wa.notification(
            wa.value(
                statuses=[wa.status("wamid.q", "read", key=key, recipient=CONTACT)],
                phone_number_id=BETA_NUMBER,
            )
        )
        for body in (to_beta, unknown, wa.encode(stolen)):
            assert post(served, body).status_code == 200
        until(lambda: all(s == "done" for _, s in stored(served)), what="bodies processed")
        assert status_of(acme, eid) == "waiting_input"  # Carla did not answer acme's question
        assert [t["text"] for t in transcript(acme, eid)] == ["oi", "Seu nome?"]
        assert transcript(acme, eid)[1]["delivery"] is None
        assert executions(beta, conversation(BETA_NUMBER)) == []
        assert executions(acme, conversation(BETA_NUMBER)) == []
        with served.client("admin") as admin:
            everyone = admin.get("/v1/executions", params={"limit": 100}).json()["executions"]
        assert [e["conversationId"] for e in everyone] == [conversation()]
    _, output = served.stop()
    assert "whatsapp.unknown_number" in output
    assert "whatsapp.message_dropped" in output
    assert CONTACT not in output  # the contact's number is masked in every line


def test_a_body_kept_before_a_crash_is_processed_after_it(
    cli: Cli, tmp_path: Path, served: Api, standin: GraphStandIn
) -> None:
    """The 200 comes once the body is stored, before it is processed; the server is
    killed while it looks the photo up; the next server on the same file processes it."""
    standin.media["2002"] = {"url": "https://lookaside.example.com/2002", "mime_type": "image/png"}
    with served.client() as acme:
        eid = started(served, acme, word="foto")
    standin.delay = 5.0  # the lookup hangs: the kill comes in the middle of it
    assert post(served, says(wa.image("wamid.crash", "2002", caption="antes"))).status_code == 200
    assert stored(served)[-1][1] == "pending"  # answered before it was processed
    until(lambda: any(r.method == "GET" for r in standin.requests), what="the lookup")
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=10)
    assert stored(served)[-1][1] == "pending"
    standin.delay = 0.0
    process, url = serve(cli, tmp_path, served.store, "--flows", str(tmp_path / "flows"), env=ENV)
    again = Api(url, process, served.store, served.keys)
    with again.client() as acme:
        until(lambda: status_of(acme, eid) == "completed", what="the end after the restart")
        said = [(t["from"], t["text"]) for t in transcript(acme, eid)]
        assert said == [
            ("contact", "foto"),
            ("bot", "Mande a foto"),
            ("contact", "antes"),
            ("bot", "Recebi antes"),
        ]
    assert stored(again)[-1][1] == "done"
    assert [r.path.rsplit("/", 1)[-1] for r in standin.requests if r.method == "GET"] == [
        "2002",
        "2002",
    ]


def test_a_server_without_the_channel_answers_404(cli: Cli, tmp_path: Path) -> None:
    """With another channel, both routes are 404 problems (and still ask for no key)."""
    api = start_api(cli, tmp_path)
    url = f"{api.url}/v1/channels/whatsapp/webhook"
    problem(httpx.get(url, params={"hub.mode": "subscribe"}), 404)
    problem(httpx.post(url, json={"object": "whatsapp_business_account"}), 404)
