"""What a contact sends beyond text, through a real ``trilha serve`` and the real
``trilha`` command: button and list replies, media, locations and languages are
accepted, stored with their structured content and read back on the transcript;
each bad field is a 422 naming it; old text bodies, duplicates and tenancy hold."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, module_api
from trilha.api.routes.executions import ExecutionOut, TranscriptOut

#: a conversation that stays open: the bot greets, then waits an hour, holding every
#: message the contact sends (replies are stored for the execution, not yet applied)
HOLDS = {
    "id": "holds",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Olá!", "next": "wait"},
        {"id": "wait", "type": "delay", "seconds": 3600, "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}
#: a conversation that asks, and asks again, whatever the reply
ASKS = {
    "id": "asks",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Onde você está?", "variable": "where",
         "maxInvalid": 50, "next": "ask"},
    ],
}  # fmt: skip

IMAGE = {
    "kind": "image",
    "url": "https://lookaside.example.com/media/123?sig=a%2Fb",
    "mimeType": "image/jpeg",
    "caption": "carteirinha frente",
}
CLINIC = {
    "latitude": -23.561414,
    "longitude": -46.655881,
    "name": "Clínica São José",
    "address": "Av. Paulista, 1000",
}
#: (body beyond messageId/contactId, the stored text, the stored content)
ACCEPTED: list[tuple[dict[str, Any], str, dict[str, Any] | None]] = [
    ({"text": "oi"}, "oi", None),
    (
        {"type": "text", "text": "Hello", "language": "en"},
        "Hello",
        {"type": "text", "text": "Hello", "language": "en"},
    ),
    (
        {"type": "button", "replyId": "agendar", "text": "Agendar"},
        "Agendar",
        {"type": "button", "replyId": "agendar", "text": "Agendar"},
    ),
    ({"type": "button", "replyId": "no"}, "no", {"type": "button", "replyId": "no"}),
    (
        {"type": "list", "replyId": "slot-1", "text": "09:00", "language": "pt-BR"},
        "09:00",
        {"type": "list", "replyId": "slot-1", "text": "09:00", "language": "pt-BR"},
    ),
    ({"type": "media", "media": IMAGE}, "carteirinha frente", {"type": "media", "media": IMAGE}),
    (
        {"type": "media", "media": {"kind": "document", "url": "http://files.example.com/d.pdf",
                                    "mimeType": "application/pdf", "filename": "guia.pdf"}},
        "[document]",
        {"type": "media", "media": {"kind": "document", "url": "http://files.example.com/d.pdf",
                                    "mimeType": "application/pdf", "filename": "guia.pdf"}},
    ),
    (
        {"type": "media", "media": {"kind": "audio", "url": "https://x.example.com/a",
                                    "mimeType": "audio/ogg; codecs=opus"}},
        "[audio]",
        {"type": "media", "media": {"kind": "audio", "url": "https://x.example.com/a",
                                    "mimeType": "audio/ogg; codecs=opus"}},
    ),
    (
        {"type": "location", "location": CLINIC},
        "Clínica São José, Av. Paulista, 1000",
        {"type": "location", "location": CLINIC},
    ),
    (
        {"type": "location", "location": {"latitude": 0, "longitude": -180}},
        "0.0,-180.0",
        {"type": "location", "location": {"latitude": 0.0, "longitude": -180.0}},
    ),
]  # fmt: skip

LONG_URL = "https://a.example.com/" + "x" * 2_000
LONG_MIME = "image/" + "j" * 250
#: (a bad body beyond messageId/contactId, the field its 422 names)
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"type": "button", "text": "Agendar"}, "body.replyId"),
    ({"type": "list"}, "body.replyId"),
    ({"type": "button", "replyId": ""}, "body.replyId"),
    ({"type": "button", "replyId": "r" * 257}, "body.replyId"),
    ({"type": "media", "text": "foto"}, "body.media"),
    ({"type": "location"}, "body.location"),
    ({"type": "text"}, "body.text"),
    ({}, "body.text"),
    ({"type": "sticker", "text": "?"}, "body.type"),
    ({"text": "oi", "replyId": "agendar"}, "body.replyId"),
    ({"text": "oi", "media": IMAGE}, "body.media"),
    ({"type": "button", "replyId": "a", "location": CLINIC}, "body.location"),
    ({"type": "location", "location": {**CLINIC, "latitude": 90.5}}, "body.location.latitude"),
    ({"type": "location", "location": {**CLINIC, "latitude": -91}}, "body.location.latitude"),
    ({"type": "location", "location": {**CLINIC, "longitude": 180.01}}, "body.location.longitude"),
    ({"type": "location", "location": {**CLINIC, "longitude": -181}}, "body.location.longitude"),
    ({"type": "location", "location": {**CLINIC, "latitude": "-23.5"}}, "body.location.latitude"),
    ({"type": "location", "location": {**CLINIC, "longitude": True}}, "body.location.longitude"),
    ({"type": "location", "location": {"latitude": 1}}, "body.location.longitude"),
    ({"type": "location", "location": {**CLINIC, "name": "n" * 1_001}}, "body.location.name"),
    ({"type": "location", "location": {**CLINIC, "address": "a" * 1_001}}, "body.location.address"),
    ({"type": "media", "media": {**IMAGE, "url": "ftp://files.example.com/a"}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "url": "javascript:alert(1)"}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "url": "https:///no-host"}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "url": "https://a.example.com/ b"}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "url": LONG_URL}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "kind": "gif"}}, "body.media.kind"),
    ({"type": "media", "media": {"kind": "image"}}, "body.media.url"),
    ({"type": "media", "media": {**IMAGE, "caption": "c" * 1_025}}, "body.media.caption"),
    ({"type": "media", "media": {**IMAGE, "filename": "f" * 241}}, "body.media.filename"),
    ({"type": "media", "media": {**IMAGE, "mimeType": "jpeg"}}, "body.media.mimeType"),
    ({"type": "media", "media": {**IMAGE, "mimeType": LONG_MIME}}, "body.media.mimeType"),
    ({"type": "media", "media": {**IMAGE, "mimeType": "image/jpeg\nX: y"}}, "body.media.mimeType"),
    ({"text": "oi", "language": "português"}, "body.language"),
    ({"text": "oi", "language": "pt-" + "B" * 40}, "body.language"),
    ({"text": "t" * 10_001}, "body.text"),
]  # fmt: skip


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem document (RFC 9457) with this status, no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def until(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def transcript(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/executions/{execution_id}/transcript")
    assert answer.status_code == 200, answer.text
    TranscriptOut.model_validate(answer.json())  # the documented shape, content included
    entries: list[dict[str, Any]] = answer.json()["transcript"]
    return entries


def said_by_contact(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    return [e for e in transcript(client, execution_id) if e["from"] == "contact"]


def holding(client: httpx.Client, conversation: str) -> str:
    """Start HOLDS for ``conversation``; its execution id once it greeted and waits."""
    assert client.put("/v1/flows/holds", json=HOLDS).status_code in (200, 201)
    started = client.post(
        "/v1/executions",
        json={"flowId": "holds", "conversationId": conversation, "contactId": "c-1"},
    )
    assert started.status_code == 201, started.text
    eid: str = started.json()["executionId"]
    until(
        lambda: client.get(f"/v1/executions/{eid}").json()["status"] == "waiting_delay",
        what="the delay",
    )
    return eid


def message(n: int | str, **body: Any) -> dict[str, Any]:
    return {"messageId": f"wamid.{n}", "contactId": "c-1", **body}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "inbound") as api:
        yield api


@pytest.fixture
def api(server: Api) -> Api:
    """The module's server, with institutions of the test's own."""
    return server.tenant()


def test_every_inbound_type_is_stored_with_its_content(api: Api) -> None:
    """Each type is accepted (202) and comes back on the transcript in order, with its
    plain text and its content; a plain text has no content, as before."""
    with api.client() as acme:
        eid = holding(acme, "conv-types")
        for n, (body, _, _) in enumerate(ACCEPTED):
            sent = acme.post("/v1/conversations/conv-types/messages", json=message(n, **body))
            assert sent.status_code == 202, (body, sent.text)
            assert sent.json()["duplicate"] is False and sent.json()["executionId"] == eid
        said = said_by_contact(acme, eid)
        assert [(e["text"], e.get("content")) for e in said] == [
            (text, content) for _, text, content in ACCEPTED
        ]
        assert "content" not in said[0]  # today's text-only body is stored as it always was
        bot = [e for e in transcript(acme, eid) if e["from"] == "bot"]
        assert [e["text"] for e in bot] == ["Olá!"]


def test_old_text_body_and_duplicates_are_unchanged(api: Api) -> None:
    """A body with text only answers as it always did; a repeated messageId is a
    duplicate whatever its type, and the first message's content is the one kept."""
    with api.client() as acme:
        eid = holding(acme, "conv-dup")
        first = acme.post(
            "/v1/conversations/conv-dup/messages",
            json=message(1, type="button", replyId="agendar", text="Agendar"),
        )
        assert first.status_code == 202 and first.json()["duplicate"] is False
        for resent in (
            message(1, type="button", replyId="cancelar", text="Cancelar"),
            message(1, type="location", location=CLINIC),
            message(1, text="Agendar"),
        ):
            again = acme.post("/v1/conversations/conv-dup/messages", json=resent)
            assert again.status_code == 202, again.text
            assert again.json()["duplicate"] is True
            assert again.json()["receivedAt"] == first.json()["receivedAt"]
        plain = acme.post("/v1/conversations/conv-dup/messages", json=message(2, text="oi"))
        assert plain.status_code == 202
        assert set(plain.json()) == {
            "accepted",
            "duplicate",
            "messageId",
            "conversationId",
            "executionId",
            "receivedAt",
        }
        assert [(e["text"], e.get("content")) for e in said_by_contact(acme, eid)] == [
            ("Agendar", {"type": "button", "replyId": "agendar", "text": "Agendar"}),
            ("oi", None),
        ]


def test_each_bad_field_is_a_422_naming_it(api: Api) -> None:
    """Every malformed message is refused with a problem naming the field at fault, and
    nothing of it is stored."""
    with api.client() as acme:
        eid = holding(acme, "conv-bad")
        for n, (body, field) in enumerate(REFUSED):
            answer = acme.post("/v1/conversations/conv-bad/messages", json=message(n, **body))
            found = problem(answer, 422)
            fields = [e["field"] for e in found["errors"]]
            assert field in fields, (body, found["errors"])
        assert said_by_contact(acme, eid) == []
        # the messages' ids were not taken by the refused bodies
        ok = acme.post("/v1/conversations/conv-bad/messages", json=message(0, text="oi"))
        assert ok.status_code == 202 and ok.json()["duplicate"] is False


def test_a_missing_field_says_which_type_needs_it(api: Api) -> None:
    """The 422 for a button without replyId says it is required for that type; a field
    of another type says which type it belongs to."""
    with api.client() as acme:
        holding(acme, "conv-why")
        missing = problem(
            acme.post(
                "/v1/conversations/conv-why/messages", json=message(1, type="button", text="Ok")
            ),
            422,
        )
        assert {"field": "body.replyId", "message": "required when type is 'button'"} in (
            missing["errors"]
        )
        misplaced = problem(
            acme.post(
                "/v1/conversations/conv-why/messages",
                json=message(2, text="oi", location=CLINIC),
            ),
            422,
        )
        assert {"field": "body.location", "message": "only for type 'location'"} in (
            misplaced["errors"]
        )


def test_another_institution_cannot_post_to_the_conversation(api: Api) -> None:
    """beta's key gets 404 for acme's conversation, whatever the message's type, and
    nothing reaches acme's execution."""
    with api.client() as acme, api.client("beta_operator") as beta:
        eid = holding(acme, "conv-tenant")
        for n, body in enumerate(
            [
                {"text": "oi"},
                {"type": "button", "replyId": "agendar", "text": "Agendar"},
                {"type": "location", "location": CLINIC},
                {"type": "media", "media": IMAGE},
            ]
        ):
            refused = beta.post("/v1/conversations/conv-tenant/messages", json=message(n, **body))
            problem(refused, 404)
            named = beta.post(
                "/v1/conversations/conv-tenant/messages",
                json={**message(f"i{n}", **body), "institutionId": api.institutions["acme"]},
            )
            problem(named, 404)
        assert said_by_contact(acme, eid) == []
        mine = acme.post(
            "/v1/conversations/conv-tenant/messages",
            json=message(0, type="location", location=CLINIC),
        )
        assert mine.status_code == 202 and mine.json()["duplicate"] is False


def test_language_on_start_lands_in_the_variables(api: Api) -> None:
    """A start request's language becomes contact.language, merged into the contact the
    variables give; a bad tag or a contact that is not an object is a 422 naming it."""
    with api.client() as acme:
        assert acme.put("/v1/flows/holds", json=HOLDS).status_code in (200, 201)

        def start(conversation: str, **extra: Any) -> httpx.Response:
            return acme.post(
                "/v1/executions",
                json={"flowId": "holds", "conversationId": conversation, "contactId": "c", **extra},
            )

        merged = start("conv-l1", language="pt-BR", variables={"contact": {"name": "Ana"}, "a": 1})
        assert merged.status_code == 201, merged.text
        assert ExecutionOut.model_validate(merged.json()).variables == {
            "contact": {"name": "Ana", "language": "pt-BR"},
            "a": 1,
        }
        alone = start("conv-l2", language="en")
        assert alone.status_code == 201, alone.text
        assert alone.json()["variables"] == {"contact": {"language": "en"}}
        wins = start("conv-l3", language="en", variables={"contact": {"language": "pt-BR"}})
        assert wins.json()["variables"]["contact"] == {"language": "en"}
        without = start("conv-l4", variables={"contact": {"language": "es"}})
        assert without.json()["variables"] == {"contact": {"language": "es"}}

        bad_tag = problem(start("conv-l5", language="pt_BR!"), 422)
        assert [e["field"] for e in bad_tag["errors"]] == ["body.language"]
        not_object = problem(start("conv-l6", language="en", variables={"contact": "Ana"}), 422)
        assert [e["field"] for e in not_object["errors"]] == ["body.variables.contact"]
        listed = acme.get("/v1/executions", params={"conversationId": "conv-l6"}).json()
        assert listed["executions"] == []  # refused: nothing started


def test_openapi_documents_the_new_fields(api: Api) -> None:
    """The message body and the start request describe every new field."""
    schemas = httpx.get(f"{api.url}/openapi.json").json()["components"]["schemas"]
    body = schemas["InboundMessageIn"]["properties"]
    for name in ("type", "text", "replyId", "media", "location", "language"):
        assert body[name].get("description"), name
    for model, fields in (
        ("MediaIn", ("kind", "url", "mimeType", "caption", "filename")),
        ("LocationIn", ("latitude", "longitude", "name", "address")),
    ):
        for name in fields:
            assert schemas[model]["properties"][name].get("description"), (model, name)
    assert schemas["StartExecution"]["properties"]["language"].get("description")
    assert schemas["TranscriptEntryOut"]["properties"]["content"].get("description")


# ------------------------------------------------------------------------------ the CLI


def test_cli_send_location_is_stored_and_shown(cli: Cli, tmp_path: Path) -> None:
    """`trilha send --type location ...` stores the place; `show --json` carries its
    content; a bad flag is a one-line error naming it and stores nothing."""
    store = f"sqlite:///{tmp_path / 't.db'}"
    flow = tmp_path / "asks.json"
    flow.write_text(json.dumps(ASKS), encoding="utf-8")
    ran = cli("run", flow, "--store", store, "--language", "pt-BR", "--json")
    assert ran.returncode == 0, ran.stderr
    started = json.loads(ran.stdout)
    assert started["status"] == "waiting_input"
    assert started["variables"]["contact"] == {"language": "pt-BR"}
    eid = started["executionId"]

    for flags, named in (
        (["--type", "location", "--latitude", "91", "--longitude", "0"], "--latitude"),
        (["--type", "location", "--latitude", "1"], "--longitude"),
        (["--type", "button"], "--reply-id"),
        (["--type", "media", "--media-kind", "image", "--media-url", "ftp://x/y"], "--media-url"),
        (["--type", "location", "--name", "Casa", "--latitude", "1", "--longitude", "2", "oi",
          "--reply-id", "r"], "--reply-id"),
        (["--type", "carrier-pigeon", "oi"], "--type"),
        (["oi", "--language", "portuguese!"], "--language"),
    ):  # fmt: skip
        refused = cli("send", eid, *flags, "--store", store)
        assert refused.returncode == 1, (flags, refused.stdout, refused.stderr)
        assert "Traceback" not in refused.stderr
        line = refused.stderr.strip().splitlines()[0]
        assert named in line, (flags, line)
    no_text = cli("send", eid, "--store", store)
    assert no_text.returncode == 1
    assert "TEXT: required when type is 'text'" in no_text.stderr

    sent = cli(
        "send",
        eid,
        "--type",
        "location",
        "--latitude",
        "-23.561414",
        "--longitude",
        "-46.655881",
        "--name",
        "Clínica São José",
        "--address",
        "Av. Paulista, 1000",
        "--language",
        "pt-BR",
        "--store",
        store,
    )
    assert sent.returncode == 0, sent.stderr
    shown = cli("show", eid, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    contact = [t for t in json.loads(shown.stdout)["transcript"] if t["from"] == "contact"]
    assert [(t["text"], t["content"]) for t in contact] == [
        (
            "Clínica São José, Av. Paulista, 1000",
            {"type": "location", "location": CLINIC, "language": "pt-BR"},
        )
    ]

    button = cli(
        "send", eid, "Agendar", "--type", "button", "--reply-id", "agendar", "--store", store
    )
    assert button.returncode == 0, button.stderr
    media = cli(
        "send", eid, "--type", "media", "--media-kind", "document", "--media-url",
        "https://files.example.com/guia.pdf", "--mime-type", "application/pdf",
        "--filename", "guia.pdf", "--caption", "guia", "--store", store,
    )  # fmt: skip
    assert media.returncode == 0, media.stderr
    shown = json.loads(cli("show", eid, "--store", store, "--json").stdout)
    contact = [t for t in shown["transcript"] if t["from"] == "contact"]
    assert [(t["text"], t["content"]["type"]) for t in contact] == [
        ("Clínica São José, Av. Paulista, 1000", "location"),
        ("Agendar", "button"),
        ("guia", "media"),
    ]
    assert contact[1]["content"] == {"type": "button", "replyId": "agendar", "text": "Agendar"}
    assert contact[2]["content"]["media"] == {
        "kind": "document",
        "url": "https://files.example.com/guia.pdf",
        "mimeType": "application/pdf",
        "caption": "guia",
        "filename": "guia.pdf",
    }
