"""The WhatsApp channel's sending side through the dispatcher, over a real SQLite store
and the Graph API stand-in (a real HTTP server answering as Meta documents): every
content type in Meta's shape, each error code Meta answers and what becomes of the
message (retried, sent as its template, dead at once with the reason), the number a
conversation is sent from and the institution it must belong to, and mark-read.

The clock is fake: a retry is due when the test moves the clock past it."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from graph_standin import GraphStandIn, Refusal, graph_standin
from trilha.channels.whatsapp.channel import WhatsAppChannel
from trilha.config import Config, WhatsAppConfig, WhatsAppNumber
from trilha.core.content import CAPABILITIES
from trilha.core.execution import OutboundMessage
from trilha.engine.dispatcher import Dispatcher
from trilha.errors import ChannelError, ConfigError
from trilha.runtime import make_channel

Harness = Any

WA_ID = "5511987654321"
CONVERSATION = f"wa:1001:{WA_ID}"
TEMPLATE = {
    "name": "retomar_conversa",
    "language": "pt_BR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}
TEMPLATE_SENT = {
    "name": "retomar_conversa",
    "language": {"code": "pt_BR"},
    "components": TEMPLATE["components"],
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wa_config(url: str, **settings: Any) -> WhatsAppConfig:
    """Two numbers for inst-1, one for inst-2 (with its own token)."""
    return WhatsAppConfig(
        access_token="system-user-token",
        app_secret="app-secret",
        verify_token="verify",
        api_base_url=url,
        numbers=[
            WhatsAppNumber(phone_number_id="1001", institution="inst-1"),
            WhatsAppNumber(phone_number_id="1002", institution="inst-1"),
            WhatsAppNumber(phone_number_id="2001", institution="inst-2", access_token="beta-token"),
        ],
        **settings,
    )


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as server:
        yield server


class Sending:
    """A harness's store behind a dispatcher sending through a WhatsApp channel."""

    def __init__(self, h: Harness, url: str, hold_seconds: float = 0.0, **settings: Any) -> None:
        self.h = h
        self.channel = WhatsAppChannel.from_config(wa_config(url, **settings))
        # a 130429 holds the number back in real time; the tests that show it set it
        self.channel.hold_seconds = hold_seconds
        self.dispatcher = Dispatcher(
            h.store, self.channel, clock=h.clock, max_attempts=5, backoff_seconds=2.0
        )

    async def round(self) -> int:
        return await self.dispatcher.run_once()

    async def later(self, seconds: float = 3_600.0) -> int:
        """Move past any retry and run a round."""
        self.h.clock.advance(seconds)
        return await self.dispatcher.run_once()


@pytest.fixture
async def make_sending(make_harness: Callable[..., Harness], standin: GraphStandIn) -> Any:
    made: list[Sending] = []

    def make(url: str | None = None, hold_seconds: float = 0.0, **settings: Any) -> Sending:
        sending = Sending(make_harness(), url or standin.url, hold_seconds, **settings)
        made.append(sending)
        return sending

    yield make
    for sending in made:
        await sending.channel.aclose()


def flow(flow_id: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    chained = [dict(n) for n in nodes] + [{"id": "bye", "type": "end"}]
    for i, node in enumerate(chained[:-1]):
        node.setdefault("id", f"n{i}")
    for node, after in itertools.pairwise(chained):
        node["next"] = after["id"]
    return {"id": flow_id, "start": chained[0]["id"], "nodes": chained}


async def queue(
    h: Harness,
    definition: dict[str, Any],
    *,
    conversation: str = CONVERSATION,
    institution: str = "inst-1",
    contact: str = WA_ID,
) -> Any:
    """Publish and start ``definition``; run its steps (the engine only: its messages
    wait in the outbox)."""
    await h.publish(definition)
    ex = await h.start(
        definition["id"], conversation, institution_id=institution, contact_id=contact
    )
    while await h.engine.run_once(execution_id=ex.id):
        pass
    return ex


async def trail(h: Harness, execution_id: str, event: str) -> list[dict[str, Any]]:
    return [r.context for r in await h.store.logs(execution_id) if r.message == event]


async def outbox(h: Harness, execution_id: str) -> list[tuple[str, int]]:
    return [(m.status, m.attempts) for m in await h.store.outbox_for(execution_id)]


def envelope(message: dict[str, Any], key: str, to: str = WA_ID) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        **message,
        "biz_opaque_callback_data": key,
    }


# ----------------------------------------------------------------------------- content


async def test_every_content_type_reaches_meta_in_its_documented_shape(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await queue(
        s.h,
        flow(
            "tour",
            {"type": "message", "text": "Olá! Veja https://clinica.example"},
            {
                "type": "message",
                "text": "Como posso ajudar?",
                "header": "Clínica",
                "footer": "Responda tocando",
                "buttons": [
                    {"id": "agendar", "title": "Agendar"},
                    {"id": "precos", "title": "Preços"},
                ],
            },
            {
                "type": "message",
                "text": "Escolha o horário",
                "list": {
                    "button": "Horários",
                    "sections": [
                        {
                            "title": "Manhã",
                            "rows": [{"id": "s1", "title": "09:00", "description": "Dra. Ana"}],
                        },
                        {"title": "Tarde", "rows": [{"id": "s2", "title": "14:00"}]},
                    ],
                },
            },
            {
                "type": "message",
                "text": "Nossa fachada",
                "media": {"kind": "image", "url": "https://cdn.example/f.jpg"},
            },
            {
                "type": "message",
                "text": "Seu preparo",
                "media": {
                    "kind": "document",
                    "url": "https://cdn.example/p.pdf",
                    "filename": "preparo.pdf",
                },
            },
            {
                "type": "message",
                "text": "Como chegar",
                "media": {"kind": "video", "url": "https://cdn.example/v.mp4", "caption": "1 min"},
            },
            {"type": "message", "media": {"kind": "audio", "url": "https://cdn.example/a.ogg"}},
            {"type": "message", "media": {"kind": "sticker", "url": "https://cdn.example/s.webp"}},
            {
                "type": "message",
                "text": "Onde estamos",
                "location": {
                    "latitude": -23.5613,
                    "longitude": -46.6565,
                    "name": "Clínica Sorriso",
                    "address": "Av. Paulista, 1000",
                },
            },
        ),
    )
    assert await s.round() == 9
    keys = [m.idempotency_key for m in await s.h.store.outbox_for(ex.id)]
    sends = standin.sends()
    assert [r.path for r in sends] == ["/v21.0/1001/messages"] * 9
    assert {r.headers["authorization"] for r in sends} == {"Bearer system-user-token"}
    expected = [
        {
            "type": "text",
            "text": {"preview_url": True, "body": "Olá! Veja https://clinica.example"},
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "text", "text": "Clínica"},
                "body": {"text": "Como posso ajudar?"},
                "footer": {"text": "Responda tocando"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "agendar", "title": "Agendar"}},
                        {"type": "reply", "reply": {"id": "precos", "title": "Preços"}},
                    ]
                },
            },
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Escolha o horário"},
                "action": {
                    "button": "Horários",
                    "sections": [
                        {
                            "title": "Manhã",
                            "rows": [{"id": "s1", "title": "09:00", "description": "Dra. Ana"}],
                        },
                        {"title": "Tarde", "rows": [{"id": "s2", "title": "14:00"}]},
                    ],
                },
            },
        },
        {
            "type": "image",
            "image": {"link": "https://cdn.example/f.jpg", "caption": "Nossa fachada"},
        },
        {
            "type": "document",
            "document": {
                "link": "https://cdn.example/p.pdf",
                "caption": "Seu preparo",
                "filename": "preparo.pdf",
            },
        },
        {
            "type": "video",
            "video": {"link": "https://cdn.example/v.mp4", "caption": "Como chegar\n\n1 min"},
        },
        {"type": "audio", "audio": {"link": "https://cdn.example/a.ogg"}},
        {"type": "sticker", "sticker": {"link": "https://cdn.example/s.webp"}},
        {
            "type": "location",
            "location": {
                "latitude": -23.5613,
                "longitude": -46.6565,
                "name": "Clínica Sorriso",
                "address": "Av. Paulista, 1000",
            },
        },
    ]
    assert [r.body for r in sends] == [envelope(m, k) for m, k in zip(expected, keys, strict=True)]
    assert await outbox(s.h, ex.id) == [("sent", 1)] * 9


async def held(s: Sending, conversation: str = CONVERSATION) -> Any:
    """An execution a person holds, so their messages (any content) go to the outbox."""
    ex = await queue(
        s.h,
        {
            "id": "desk",
            "start": "h",
            "nodes": [{"id": "h", "type": "handoff", "mode": "wait", "queue": "q"}],
        },
        conversation=conversation,
    )
    await s.round()  # whatever the handoff said
    return ex


async def agent_says(
    s: Sending, content: dict[str, Any], text: str = "Olá", message_id: str = "m1"
) -> None:
    await s.h.store.record_agent_message(
        institution_id="inst-1",
        conversation_id=CONVERSATION,
        message_id=message_id,
        agent_id="ana",
        text=text,
        content=content,
        now=s.h.clock.now(),
    )


async def test_a_template_message_is_sent_as_metas_template(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await held(s)
    before = len(standin.sends())
    await agent_says(s, {"type": "template", "text": "Olá Ana", "template": TEMPLATE})
    assert await s.round() == 1
    (sent,) = standin.sends()[before:]
    assert sent.body is not None
    assert sent.body["type"] == "template" and sent.body["template"] == TEMPLATE_SENT
    assert (await outbox(s.h, ex.id))[-1] == ("sent", 1)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", [130429, 131056])
async def test_metas_throttling_is_retried_with_backoff_then_sent(
    make_sending: Any, standin: GraphStandIn, code: int
) -> None:
    s = make_sending()
    ex = await queue(s.h, flow("hi", {"type": "message", "text": "oi"}))
    standin.refuse_next = [Refusal(code)]
    await s.round()
    (failed,) = await trail(s.h, ex.id, "message.delivery_failed")
    assert (failed["reason"], failed["code"], failed["attempt"]) == ("throttled", code, 1)
    assert failed["retryInSeconds"] >= (6.0 if code == 131056 else 1.0)  # 131056: Meta's pair
    assert await outbox(s.h, ex.id) == [("pending", 1)]
    assert await s.round() == 0  # not before its retry
    await s.later()
    assert await outbox(s.h, ex.id) == [("sent", 2)]
    assert len(standin.sends()) == 2
    assert await trail(s.h, ex.id, "message.dead") == []


async def test_metas_throughput_refusal_holds_the_number_back_a_moment(
    make_sending: Any, standin: GraphStandIn
) -> None:
    """After 130429 the number's next messages wait in the outbox (no attempt spent on
    the same refusal); the institution's other number is not held."""
    s = make_sending(hold_seconds=0.8)  # longer than a send waits for its slot (0.5 s)
    hi = flow("hi", {"type": "message", "text": "oi"})
    refused = await queue(s.h, hi)
    standin.refuse_next = [Refusal(130429)]
    await s.round()
    held = await queue(s.h, hi, conversation="wa:1001:5511000000002", contact="5511000000002")
    other = await queue(s.h, hi, conversation="wa:1002:5511000000003", contact="5511000000003")
    await s.round()
    assert await outbox(s.h, held.id) == [("pending", 0)]
    (deferred,) = await trail(s.h, held.id, "message.deferred")
    assert deferred["reason"] == "throttled" and deferred["retryInSeconds"] > 0
    assert await outbox(s.h, other.id) == [("sent", 1)]
    assert [r.path for r in standin.sends()] == ["/v21.0/1001/messages", "/v21.0/1002/messages"]
    await asyncio.sleep(0.85)  # the hold is real time, as Meta's window is
    await s.later()
    assert await outbox(s.h, refused.id) == [("sent", 2)]
    assert await outbox(s.h, held.id) == [("sent", 1)]


async def test_outside_the_window_a_message_with_a_template_sends_the_template(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await held(s)
    before = len(standin.sends())
    standin.refuse_next = [Refusal(131047)]
    buttons = [{"id": "sim", "title": "Sim"}]
    content = {"type": "buttons", "text": "Ainda quer agendar?", "buttons": buttons}
    await agent_says(s, {**content, "template": TEMPLATE}, text="Ainda quer agendar?")
    assert await s.round() == 1
    refused, instead = standin.sends()[before:]
    assert refused.body is not None and instead.body is not None
    assert refused.body["type"] == "interactive"
    key = refused.body["biz_opaque_callback_data"]
    assert instead.body == envelope({"type": "template", "template": TEMPLATE_SENT}, key)
    assert (await outbox(s.h, ex.id))[-1] == ("sent", 1)
    assert await trail(s.h, ex.id, "message.delivery_failed") == []


async def test_outside_the_window_a_message_without_a_template_is_dead_at_once(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await queue(s.h, flow("hi", {"type": "message", "text": "oi"}))
    standin.refuse_next = [Refusal(131047)]
    await s.round()
    assert await outbox(s.h, ex.id) == [("dead", 1)]
    (dead,) = await trail(s.h, ex.id, "message.dead")
    assert (dead["reason"], dead["code"], dead["attempts"]) == ("outside_window", 131047, 1)
    assert "no template" in dead["error"]["message"]
    await s.later()
    assert len(standin.sends()) == 1  # never tried again


async def test_an_undeliverable_message_is_dead_at_once_with_metas_reason(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await queue(s.h, flow("hi", {"type": "message", "text": "oi"}))
    standin.refuse_to[WA_ID] = Refusal(131026)
    await s.round()
    assert await outbox(s.h, ex.id) == [("dead", 1)]
    (dead,) = await trail(s.h, ex.id, "message.dead")
    assert (dead["reason"], dead["code"], dead["status"]) == ("permanent", 131026, 400)
    assert "Message Undeliverable" in dead["error"]["message"]
    (failed,) = await trail(s.h, ex.id, "message.delivery_failed")
    assert failed["nextAttemptAt"] is None
    await s.later()
    assert len(standin.sends()) == 1


async def test_a_server_error_is_retried_then_sent(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    ex = await queue(s.h, flow("hi", {"type": "message", "text": "oi"}))
    standin.refuse_next = [Refusal(131000, 500), Refusal(2, 503)]
    await s.round()
    await s.later()
    assert await outbox(s.h, ex.id) == [("pending", 2)]
    reasons = [f["reason"] for f in await trail(s.h, ex.id, "message.delivery_failed")]
    assert reasons == ["http_5xx", "http_5xx"]
    await s.later()
    assert await outbox(s.h, ex.id) == [("sent", 3)]


async def test_a_refused_connection_is_retried_and_sent_once_meta_answers(
    make_sending: Any, standin: GraphStandIn
) -> None:
    down = make_sending(f"http://127.0.0.1:{closed_port()}/v21.0")
    ex = await queue(down.h, flow("hi", {"type": "message", "text": "oi"}))
    await down.round()
    (failed,) = await trail(down.h, ex.id, "message.delivery_failed")
    assert failed["reason"] == "connection" and failed["nextAttemptAt"] is not None
    up = make_sending()  # the same store; Meta answers again
    await up.later()
    assert await outbox(up.h, ex.id) == [("sent", 2)]
    assert len(standin.sends()) == 1


# ----------------------------------------------------------------------------- numbers


async def test_a_conversation_on_another_institutions_number_is_refused_unsent(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    theirs = await queue(
        s.h, flow("hi", {"type": "message", "text": "oi"}), conversation=f"wa:2001:{WA_ID}"
    )
    unknown = await queue(
        s.h, flow("hi", {"type": "message", "text": "oi"}), conversation=f"wa:9999:{WA_ID}"
    )
    await s.round()
    await s.later()
    assert standin.sends() == []
    for ex, why in ((theirs, "is not the institution's"), (unknown, "is not configured")):
        assert await outbox(s.h, ex.id) == [("dead", 1)]
        (dead,) = await trail(s.h, ex.id, "message.dead")
        assert dead["reason"] == "permanent" and why in dead["error"]["message"]
        assert "not sent for institution inst-1" in dead["error"]["message"]
        assert WA_ID not in dead["error"]["message"]  # no contact in the trail


async def test_each_number_sends_with_its_own_token(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    await queue(
        s.h,
        flow("hi", {"type": "message", "text": "oi"}),
        conversation=f"wa:2001:{WA_ID}",
        institution="inst-2",
    )
    await queue(s.h, flow("hi", {"type": "message", "text": "oi"}), conversation=f"wa:1002:{WA_ID}")
    await s.round()
    by_path = {r.path: r.headers["authorization"] for r in standin.sends()}
    assert by_path == {
        "/v21.0/2001/messages": "Bearer beta-token",
        "/v21.0/1002/messages": "Bearer system-user-token",
    }


async def test_a_conversation_of_another_form_uses_the_institutions_only_number(
    make_sending: Any, standin: GraphStandIn
) -> None:
    s = make_sending()
    beta = await queue(
        s.h,
        flow("hi", {"type": "message", "text": "oi"}),
        conversation="api-conv-7",
        institution="inst-2",
        contact="5521999990000",
    )
    acme = await queue(
        s.h, flow("hi", {"type": "message", "text": "oi"}), conversation="api-conv-8"
    )
    nobody = await queue(
        s.h, flow("hi", {"type": "message", "text": "oi"}), conversation="c", institution="inst-3"
    )
    await s.round()
    (sent,) = standin.sends()
    assert sent.path == "/v21.0/2001/messages"
    assert sent.body is not None and sent.body["to"] == "5521999990000"
    assert await outbox(s.h, beta.id) == [("sent", 1)]
    (two,) = await trail(s.h, acme.id, "message.dead")
    assert "2 WhatsApp numbers" in two["error"]["message"]
    (none,) = await trail(s.h, nobody.id, "message.dead")
    assert "no WhatsApp number" in none["error"]["message"]


# ----------------------------------------------------------------------------- mark read


def answer(key: str, reply_to: str | None, conversation: str = CONVERSATION) -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=key,
        execution_id="ex-1",
        institution_id="inst-1",
        conversation_id=conversation,
        contact_id=WA_ID,
        channel="whatsapp",
        text="Recebido!",
        created_at=0.0,
        step_seq=1,
        reply_to=reply_to,
    )


async def test_mark_read_marks_the_answered_message_once_before_the_answer(
    make_sending: Any, standin: GraphStandIn
) -> None:
    channel = make_sending(mark_read=True).channel
    await channel.deliver(answer("k1", "wamid.IN1"))
    await channel.deliver(answer("k2", "wamid.IN1"))
    await channel.deliver(answer("k3", None))
    assert standin.reads() == ["wamid.IN1"]
    read = next(r for r in standin.requests if r.body and r.body.get("status") == "read")
    assert read.path == "/v21.0/1001/messages"
    assert read.body == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN1",
    }
    assert standin.requests.index(read) < standin.requests.index(standin.sends()[0])
    assert len(standin.sends()) == 3


async def test_without_mark_read_nothing_is_marked(
    make_sending: Any, standin: GraphStandIn
) -> None:
    channel = make_sending().channel
    await channel.deliver(answer("k1", "wamid.IN1"))
    assert standin.reads() == [] and len(standin.sends()) == 1


async def test_a_failed_mark_read_never_fails_the_message(
    make_sending: Any, standin: GraphStandIn
) -> None:
    channel = make_sending(mark_read=True).channel
    standin.refuse_reads = Refusal(131000, 500)
    await channel.deliver(answer("k1", "wamid.IN1"))
    await channel.deliver(answer("k2", "wamid.IN1"))  # a transient failure is tried again
    standin.refuse_reads = Refusal(100)
    await channel.deliver(answer("k3", "wamid.IN2"))
    await channel.deliver(answer("k4", "wamid.IN2"))  # a permanent one is not
    assert standin.reads() == ["wamid.IN1", "wamid.IN1", "wamid.IN2"]
    assert len(standin.sends()) == 4


async def test_a_refused_conversation_is_a_channel_error_naming_why(
    make_sending: Any, standin: GraphStandIn
) -> None:
    channel = make_sending(mark_read=True).channel
    with pytest.raises(ChannelError, match="not the institution's") as refused:
        await channel.deliver(answer("k1", "wamid.IN1", conversation=f"wa:2001:{WA_ID}"))
    assert refused.value.details["kind"] == "permanent"
    assert standin.requests == []  # not even marked read


# ----------------------------------------------------------------------------- wiring


async def test_make_channel_builds_it_with_its_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, standin: GraphStandIn
) -> None:
    monkeypatch.setenv("WA_TEST_TOKEN", "from-env")
    monkeypatch.setenv("WA_TEST_BETA", "beta-from-env")
    settings = wa_config(standin.url).model_dump()
    settings["access_token"] = "${WA_TEST_TOKEN}"
    settings["numbers"][2]["access_token"] = "${WA_TEST_BETA}"
    config = Config.model_validate({"channel": {"kind": "whatsapp", "whatsapp": settings}})
    channel = make_channel(config)
    assert isinstance(channel, WhatsAppChannel) and channel.renders == CAPABILITIES
    try:
        await channel.deliver(answer("k1", None))
        theirs = answer("k2", None, conversation=f"wa:2001:{WA_ID}")
        await channel.deliver(dataclasses.replace(theirs, institution_id="inst-2"))
    finally:
        await channel.aclose()
    tokens = [r.headers["authorization"] for r in standin.sends()]
    assert tokens == ["Bearer from-env", "Bearer beta-from-env"]

    monkeypatch.delenv("WA_TEST_BETA")
    with pytest.raises(ConfigError, match=r"numbers\[2\].access_token: environment variable"):
        make_channel(config)

    # set but blank: refused, never sent with an empty token
    monkeypatch.setenv("WA_TEST_BETA", " ")
    with pytest.raises(ConfigError, match=r"numbers\[2\].access_token: empty"):
        make_channel(config)
