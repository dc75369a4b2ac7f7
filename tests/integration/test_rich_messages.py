"""Rich messages end to end (issue 15) over a real SQLite store: buttons, lists built
from a variable, media, locations, answers to them, languages, sys.*, degradation on a
channel that shows text only, and the structured content kept in the transcript."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from trilha.core.states import ExecutionStatus
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker

S = ExecutionStatus
Harness = Any

SLOTS = [
    {"id": "s1", "label": "09:00", "doctor": "Dra. Ana"},
    {"id": "s2", "label": "10:30", "doctor": "Dr. Bruno"},
    {"id": "s3", "label": "14:00", "doctor": "Dra. Ana"},
]
MENU_BUTTONS = [
    {"id": "agendar", "title": "Agendar", "synonyms": ["marcar"]},
    {"id": "precos", "title": "Preços"},
    {"id": "humano", "title": "Falar com alguém"},
]
CLINIC = {
    "kind": "image",
    "url": "https://clinic.test/fachada.jpg",
    "caption": "Nossa clínica",
}
PLACE = {
    "latitude": -23.5613,
    "longitude": -46.6565,
    "name": "Clínica Sorriso",
    "address": "Av. Paulista, 1000",
}


def flow(flow_id: str, *nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    chained = [dict(n) for n in nodes]
    for node, after in itertools.pairwise(chained):
        if node["type"] not in ("end", "handoff"):
            node.setdefault("next", after["id"])
    return {"id": flow_id, "start": chained[0]["id"], "nodes": chained, **extra}


async def answer(
    h: Harness, execution_id: str, text: str, content: dict[str, Any] | None = None
) -> Any:
    """The contact's reply, structured as the API stores it, and the turn it starts."""
    await h.engine.send(execution_id, text, content=content)
    await h.settle(execution_id)
    return await h.get(execution_id)


def bot(h: Harness, execution_id: str) -> list[tuple[str, dict[str, Any] | None]]:
    """What the channel was given: each message's text and content."""
    return [(m.text, m.content) for m in h.channel.messages if m.execution_id == execution_id]


async def trail(h: Harness, execution_id: str, message: str) -> list[Any]:
    return [r for r in await h.store.logs(execution_id) if r.message == message]


def text_only(make_harness: Callable[..., Harness]) -> Harness:
    """A harness whose engine speaks to a channel that shows text only."""
    h = make_harness()
    engine = Engine(
        h.store,
        processors=h.engine.processors,
        config=h.engine.config,
        clock=h.clock,
        worker_id="w-text",
        renders=frozenset(),
    )
    worker = Worker(engine, Dispatcher(h.store, h.channel, clock=h.clock))
    return dataclasses.replace(h, engine=engine, worker=worker)


# ----------------------------------------------------------------------------- saying


async def test_buttons_a_list_from_a_variable_media_and_a_location(harness: Harness) -> None:
    """Each kind of content reaches the channel structured, with its plain text beside it."""
    await harness.publish(
        flow(
            "show",
            {
                "id": "menu",
                "type": "message",
                "header": "Clínica Sorriso",
                "text": "Olá, {{contact.name}}!",
                "footer": "Atendimento 24h",
                "buttons": MENU_BUTTONS,
            },
            {
                "id": "slots",
                "type": "message",
                "text": "Horários de {{day}}:",
                "list": {
                    "button": "Ver horários",
                    "sections": [
                        {
                            "title": "Disponíveis",
                            "rowsFrom": {
                                "items": "slots",
                                "id": "{{this.id}}",
                                "title": "{{this.label}}",
                                "description": "{{this.doctor}}",
                            },
                        }
                    ],
                },
            },
            {"id": "photo", "type": "message", "media": CLINIC},
            {"id": "where", "type": "message", "text": "Estamos aqui:", "location": PLACE},
            {"id": "bye", "type": "end"},
        )
    )
    ex = await harness.start(
        "show", variables={"contact": {"name": "Ana"}, "day": "terça", "slots": SLOTS}
    )
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED
    link = "https://www.google.com/maps/search/?api=1&query=-23.561300%2C-46.656500"
    assert bot(harness, ex.id) == [
        (
            "Clínica Sorriso\n\nOlá, Ana!\n\n1. Agendar\n2. Preços\n3. Falar com alguém"
            "\n\nAtendimento 24h",
            {
                "type": "buttons",
                "text": "Olá, Ana!",
                "header": "Clínica Sorriso",
                "footer": "Atendimento 24h",
                "buttons": [
                    {"id": "agendar", "title": "Agendar"},
                    {"id": "precos", "title": "Preços"},
                    {"id": "humano", "title": "Falar com alguém"},
                ],
            },
        ),
        (
            "Horários de terça:\n\n1. 09:00 — Dra. Ana\n2. 10:30 — Dr. Bruno\n3. 14:00 — Dra. Ana",
            {
                "type": "list",
                "text": "Horários de terça:",
                "list": {
                    "button": "Ver horários",
                    "sections": [
                        {
                            "title": "Disponíveis",
                            "rows": [
                                {"id": s["id"], "title": s["label"], "description": s["doctor"]}
                                for s in SLOTS
                            ],
                        }
                    ],
                },
            },
        ),
        (
            "Nossa clínica\nhttps://clinic.test/fachada.jpg",
            {"type": "media", "text": "", "media": CLINIC},
        ),
        (
            f"Estamos aqui:\nClínica Sorriso\nAv. Paulista, 1000\n{link}",
            {"type": "location", "text": "Estamos aqui:", "location": PLACE},
        ),
    ]
    assert await trail(harness, ex.id, "message.degraded") == []


async def test_content_is_stored_and_read_back_through_the_transcript(harness: Harness) -> None:
    """The outbox keeps each message's content; the transcript gives it back on both sides."""
    await harness.publish(
        flow(
            "kept",
            {
                "id": "ask",
                "type": "question",
                "text": "Como posso ajudar?",
                "variable": "choice",
                "validate": {"kind": "choice"},
                "buttons": MENU_BUTTONS,
            },
            {"id": "bye", "type": "end", "text": "Até logo", "location": PLACE},
        )
    )
    ex = await harness.start("kept")
    await harness.settle()
    reply = {"type": "button", "replyId": "precos", "text": "Preços"}
    ex = await answer(harness, ex.id, "Preços", reply)
    assert ex.status is S.COMPLETED and ex.variables == {"choice": "precos"}
    stored = await harness.store.outbox_for(ex.id)
    assert [m.content for m in stored] == [c for _, c in bot(harness, ex.id)]
    assert [m.content["type"] for m in stored if m.content] == ["buttons", "location"]
    transcript = await harness.store.transcript(ex.id)
    assert [(t.sender, t.text, t.content) for t in transcript] == [
        ("bot", stored[0].text, stored[0].content),
        ("contact", "Preços", reply),
        ("bot", stored[1].text, stored[1].content),
    ]
    assert transcript[1].wire()["content"] == reply


# ----------------------------------------------------------------------------- hearing


def menu_question(**extra: Any) -> dict[str, Any]:
    return {
        "id": "ask",
        "type": "question",
        "text": "Como posso ajudar?",
        "variable": "choice",
        "validate": {"kind": "choice"},
        "buttons": MENU_BUTTONS,
        "invalidText": "Escolha uma das opções.",
        "maxInvalid": 3,
    } | extra


async def test_a_choice_from_buttons_by_reply_id_title_or_number(harness: Harness) -> None:
    """The pressed id, a typed title (or synonym) and an option's number all pick the id."""
    await harness.publish(
        flow("menu", menu_question(), {"id": "done", "type": "end", "text": "Você: {{choice}}"})
    )
    replies = [
        ("Agendar", {"type": "button", "replyId": "humano", "text": "Agendar"}, "humano"),
        ("preços", None, "precos"),
        ("MARCAR", None, "agendar"),
        ("3", None, "humano"),
    ]
    for n, (text, content, expected) in enumerate(replies):
        ex = await harness.start("menu", conversation=f"conv-{n}")
        await harness.settle()
        waiting = await harness.get(ex.id)
        assert waiting.status is S.WAITING_INPUT
        assert waiting.node_state["options"] == [
            {"id": "agendar", "title": "Agendar", "synonyms": ["marcar"]},
            {"id": "precos", "title": "Preços"},
            {"id": "humano", "title": "Falar com alguém"},
        ]
        ex = await answer(harness, ex.id, text, content)
        assert ex.status is S.COMPLETED, text
        assert ex.variables == {"choice": expected}
        assert bot(harness, ex.id)[-1][0] == f"Você: {expected}"


async def test_a_wrong_choice_is_asked_again_with_the_options(harness: Harness) -> None:
    """A reply that is no option re-asks with invalidText and the same buttons."""
    await harness.publish(flow("again", menu_question(), {"id": "done", "type": "end"}))
    ex = await harness.start("again")
    await harness.settle()
    ex = await answer(harness, ex.id, "talvez")
    assert ex.status is S.WAITING_INPUT and ex.node_state["invalid"] == 1
    text, content = bot(harness, ex.id)[-1]
    assert content is not None and content["text"] == "Escolha uma das opções."
    assert [b["id"] for b in content["buttons"]] == ["agendar", "precos", "humano"]
    assert text.startswith("Escolha uma das opções.\n\n1. Agendar")
    ex = await answer(harness, ex.id, "2")
    assert ex.status is S.COMPLETED and ex.variables == {"choice": "precos"}


async def test_a_choice_from_a_list_built_from_a_variable(harness: Harness) -> None:
    """Rows built from a service's slots are the options: picked by id, title or number."""
    question = {
        "id": "slot",
        "type": "question",
        "text": "Qual horário?",
        "variable": "slotId",
        "validate": {"kind": "choice"},
        "list": {
            "button": "Horários",
            "sections": [
                {
                    "rowsFrom": {
                        "items": "slots",
                        "id": "{{this.id}}",
                        "title": "{{this.label}}",
                    }
                }
            ],
        },
    }
    await harness.publish(
        flow("slots", question, {"id": "ok", "type": "end", "text": "Marcado: {{slotId}}"})
    )
    for n, (text, content, expected) in enumerate(
        [
            ("10:30", {"type": "list", "replyId": "s2", "text": "10:30"}, "s2"),
            ("14:00", None, "s3"),
            ("1", None, "s1"),
        ]
    ):
        ex = await harness.start("slots", conversation=f"c{n}", variables={"slots": SLOTS})
        await harness.settle()
        ex = await answer(harness, ex.id, text, content)
        assert ex.status is S.COMPLETED and ex.variables["slotId"] == expected


async def test_a_media_question_takes_a_photo_and_refuses_other_replies(
    harness: Harness,
) -> None:
    """A text or a PDF to an image question takes the invalid path; the photo is saved whole."""
    await harness.publish(
        flow(
            "card",
            {
                "id": "ask",
                "type": "question",
                "text": "Envie uma foto da carteirinha.",
                "invalidText": "Preciso de uma foto.",
                "variable": "card",
                "validate": {"kind": "media", "accept": ["image/*"]},
                "maxInvalid": 2,
            },
            {"id": "ok", "type": "end", "text": "Recebido: {{card.url}} ({{card.mimeType}})"},
        )
    )
    ex = await harness.start("card")
    await harness.settle()
    ex = await answer(harness, ex.id, "não tenho agora")
    assert ex.status is S.WAITING_INPUT and ex.node_state["invalid"] == 1
    pdf = {
        "kind": "document",
        "url": "https://cdn.test/card.pdf",
        "mimeType": "application/pdf",
        "filename": "card.pdf",
    }
    ex = await answer(harness, ex.id, "card.pdf", {"type": "media", "media": pdf})
    assert ex.status is S.WAITING_INPUT and ex.node_state["invalid"] == 2
    photo = {
        "kind": "image",
        "url": "https://cdn.test/card.jpg",
        "mimeType": "image/jpeg",
        "caption": "frente",
    }
    ex = await answer(harness, ex.id, "frente", {"type": "media", "media": photo})
    assert ex.status is S.COMPLETED
    assert ex.variables == {"card": photo}
    assert [t for t, _ in bot(harness, ex.id)] == [
        "Envie uma foto da carteirinha.",
        "Preciso de uma foto.",
        "Preciso de uma foto.",
        "Recebido: https://cdn.test/card.jpg (image/jpeg)",
    ]
    outputs = [(c.output or {}).get("invalid") for c in await harness.store.checkpoints(ex.id)]
    assert [o for o in outputs if o] == [
        "expected media, got text",
        "application/pdf is not accepted (accept: image/*)",
    ]


async def test_a_location_question_saves_the_place(harness: Harness) -> None:
    """A shared location is saved whole; a typed address is the wrong type."""
    await harness.publish(
        flow(
            "where",
            {
                "id": "ask",
                "type": "question",
                "text": "Onde você está?",
                "variable": "where",
                "validate": {"kind": "location"},
                "maxInvalid": 1,
            },
            {"id": "ok", "type": "end", "text": "{{where.latitude}},{{where.longitude}}"},
        )
    )
    ex = await harness.start("where")
    await harness.settle()
    ex = await answer(harness, ex.id, "Rua Augusta")
    assert ex.status is S.WAITING_INPUT and ex.node_state["invalid"] == 1
    place = {"latitude": -23.55, "longitude": -46.66, "name": "Casa", "address": "Rua Augusta"}
    ex = await answer(harness, ex.id, "Casa", {"type": "location", "location": place})
    assert ex.status is S.COMPLETED and ex.variables == {"where": place}
    assert bot(harness, ex.id)[-1][0] == "-23.55,-46.66"


# ----------------------------------------------------------------------------- languages

GREETING = {"pt-BR": "Olá {{sys.language}}", "en": "Hello {{sys.language}}"}
BILINGUAL_ASK = {
    "id": "name",
    "type": "question",
    "text": {"pt-BR": "Seu nome?", "en": "Your name?"},
    "variable": "name",
    "buttons": [{"id": "anon", "title": {"pt-BR": "Anônimo", "en": "Anonymous"}}],
}


async def test_the_start_variable_contact_language_chooses_the_texts(harness: Harness) -> None:
    """contact.language given at the start speaks that language; none speaks the default."""
    await harness.publish(
        flow("hi", {"id": "hi", "type": "end", "text": GREETING}, defaultLanguage="pt-BR")
    )
    english = await harness.start(
        "hi", conversation="en", variables={"contact": {"language": "en-GB"}}
    )
    default = await harness.start("hi", conversation="pt")
    await harness.settle()
    assert harness.channel.texts(english.id) == ["Hello en-GB"]
    assert harness.channel.texts(default.id) == ["Olá pt-BR"]


async def test_an_inbound_messages_language_switches_the_next_texts(harness: Harness) -> None:
    """A reply carrying its language sets contact.language; what follows speaks it."""
    await harness.publish(
        flow(
            "switch",
            BILINGUAL_ASK,
            {"id": "bye", "type": "end", "text": {"pt-BR": "Tchau {{name}}", "en": "Bye {{name}}"}},
            defaultLanguage="pt-BR",
        )
    )
    ex = await harness.start("switch")
    await harness.settle()
    first = bot(harness, ex.id)[0][1]
    assert first is not None and first["text"] == "Seu nome?"
    assert first["buttons"] == [{"id": "anon", "title": "Anônimo"}]
    ex = await answer(harness, ex.id, "Ana", {"type": "text", "text": "Ana", "language": "en"})
    assert ex.status is S.COMPLETED
    assert ex.variables == {"name": "Ana", "contact": {"language": "en"}}
    assert harness.channel.texts(ex.id)[-1] == "Bye Ana"


async def test_a_set_node_on_contact_language_switches_the_texts(harness: Harness) -> None:
    """A set of contact.language is read as sys.language from the next node on."""
    await harness.publish(
        flow(
            "setlang",
            {"id": "a", "type": "message", "text": GREETING},
            {"id": "b", "type": "set", "variables": {"contact.language": "en"}},
            {"id": "c", "type": "end", "text": GREETING},
            defaultLanguage="pt-BR",
        )
    )
    ex = await harness.start("setlang")
    await harness.settle()
    assert harness.channel.texts(ex.id) == ["Olá pt-BR", "Hello en"]


async def test_sys_is_readable_in_templates_and_never_stored(harness: Harness) -> None:
    """sys.executionId, sys.now, sys.language and the rest fill templates; none is kept."""
    text = (
        "{{sys.executionId}}|{{sys.now}}|{{sys.language}}|{{sys.flowId}}|{{sys.flowVersion}}"
        "|{{sys.institutionId}}|{{sys.conversationId}}|{{sys.contactId}}|{{sys.channel}}"
    )
    await harness.publish(
        flow("sys", {"id": "a", "type": "end", "text": text}, defaultLanguage="es")
    )
    ex = await harness.start("sys", conversation="conv-sys", channel="whatsapp")
    await harness.settle()
    shown = harness.channel.texts(ex.id)[0].split("|")
    now = datetime.fromisoformat(shown[1])
    assert shown[1].endswith("Z") and now == datetime.fromtimestamp(harness.clock.now(), UTC)
    assert shown[:1] + shown[2:] == [
        ex.id,
        "es",
        "sys",
        "1",
        "inst-1",
        "conv-sys",
        "contact-1",
        "whatsapp",
    ]
    assert "sys" not in (await harness.get(ex.id)).variables


# ----------------------------------------------------------------------------- the trail


async def test_a_text_only_channel_gets_numbered_options_and_the_trail_says_so(
    make_harness: Callable[..., Harness],
) -> None:
    """renders=frozenset(): buttons become numbered text (message.degraded), a number answers."""
    h = text_only(make_harness)
    await h.publish(
        flow(
            "plain",
            menu_question(header="Clínica", footer="24h"),
            {"id": "photo", "type": "message", "media": CLINIC},
            {"id": "bye", "type": "end", "text": "Até", "location": PLACE},
        )
    )
    ex = await h.start("plain")
    await h.settle()
    text, content = bot(h, ex.id)[0]
    options = "1. Agendar\n2. Preços\n3. Falar com alguém"
    assert text == f"Clínica\n\nComo posso ajudar?\n\n{options}\n\n24h"
    assert content == {
        "type": "text",
        "text": text,
        "options": [{"id": b["id"], "title": b["title"]} for b in MENU_BUTTONS],
    }
    ex = await answer(h, ex.id, "2")
    assert ex.status is S.COMPLETED and ex.variables == {"choice": "precos"}
    assert [c["type"] for _, c in bot(h, ex.id) if c] == ["text", "text", "text"]
    degraded = await trail(h, ex.id, "message.degraded")
    assert [(r.level, r.node_id, r.context["changes"]) for r in degraded] == [
        ("INFO", "ask", ["buttons shown as numbered options (the channel cannot show buttons)"]),
        ("INFO", "photo", ["media shown as its caption and link (the channel cannot show media)"]),
        ("INFO", "bye", ["location shown as its name, address and a map link"]),
    ]


async def test_a_templated_title_too_long_is_cut_and_warned_not_failed(harness: Harness) -> None:
    """A title a service made too long is cut with '…', a WARN message.truncated, the step done."""
    await harness.publish(
        flow(
            "long",
            {
                "id": "pick",
                "type": "message",
                "text": "Confirmar?",
                "buttons": [{"id": "{{slot.id}}", "title": "{{slot.label}}"}],
            },
            {"id": "bye", "type": "end"},
        )
    )
    label = "Dra. Ana Beatriz Nascimento, 09:00"
    ex = await harness.start("long", variables={"slot": {"id": "s1", "label": label}})
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.error is None
    content = bot(harness, ex.id)[0][1]
    assert content is not None
    assert content["buttons"] == [{"id": "s1", "title": label[:19] + "…"}]
    truncated = await trail(harness, ex.id, "message.truncated")
    assert [(r.level, r.node_id, r.context) for r in truncated] == [
        (
            "WARN",
            "pick",
            {
                "reason": f"buttons[0].title rendered {len(label)} characters;"
                " cut to 20 (WhatsApp's limit)"
            },
        )
    ]
