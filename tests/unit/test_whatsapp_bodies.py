"""The ``/messages`` bodies trilha sends, each compared with the body Meta's
documentation shows for that message type (developers.facebook.com/docs/whatsapp/
cloud-api/reference/messages and the per-type pages: text, interactive reply buttons,
interactive list, image / video / audio / document / sticker, location, template)."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.channels.whatsapp.outbound import (
    MAX_BUTTONS_BODY,
    Unsendable,
    request_body,
    template_alternative,
)
from trilha.core.content import ELLIPSIS, MAX_BODY, MAX_CAPTION

TO = "5511987654321"
KEY = "ex-1:3:0"


def documented(message: dict[str, Any]) -> dict[str, Any]:
    """Meta's envelope around ``message``, as every example of the docs writes it."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        **message,
        "biz_opaque_callback_data": KEY,
    }


def body(content: dict[str, Any] | None, text: str = "plain") -> dict[str, Any]:
    return request_body(TO, text, content, callback_data=KEY)


def test_a_plain_message_is_a_text() -> None:
    assert body(None, "Olá! Como posso ajudar?") == documented(
        {"type": "text", "text": {"preview_url": False, "body": "Olá! Como posso ajudar?"}}
    )


def test_a_text_with_a_url_asks_for_its_preview() -> None:
    said = "Seu boleto: https://clinica.example/b/123"
    assert body({"type": "text", "text": said}, said) == documented(
        {"type": "text", "text": {"preview_url": True, "body": said}}
    )


def test_a_degraded_text_keeps_its_numbered_options_as_text() -> None:
    content = {"type": "text", "text": "1. Sim\n2. Não", "options": [{"id": "s", "title": "Sim"}]}
    assert body(content)["text"] == {"preview_url": False, "body": "1. Sim\n2. Não"}


def test_reply_buttons_as_documented() -> None:
    content = {
        "type": "buttons",
        "text": "Qual horário prefere?",
        "header": "Agendamento",
        "footer": "Clínica Boa Saúde",
        "buttons": [{"id": "manha", "title": "Manhã"}, {"id": "tarde", "title": "Tarde"}],
    }
    assert body(content) == documented(
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "text", "text": "Agendamento"},
                "body": {"text": "Qual horário prefere?"},
                "footer": {"text": "Clínica Boa Saúde"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "manha", "title": "Manhã"}},
                        {"type": "reply", "reply": {"id": "tarde", "title": "Tarde"}},
                    ]
                },
            },
        }
    )


def test_buttons_without_header_or_footer_leave_them_out() -> None:
    content = {"type": "buttons", "text": "Ok?", "buttons": [{"id": "y", "title": "Sim"}]}
    assert set(body(content)["interactive"]) == {"type", "body", "action"}


def test_a_buttons_body_is_cut_to_metas_1024_characters() -> None:
    long = "x" * 3_000
    content = {"type": "buttons", "text": long, "buttons": [{"id": "y", "title": "Sim"}]}
    shown = body(content)["interactive"]["body"]["text"]
    assert len(shown) == MAX_BUTTONS_BODY and shown.endswith(ELLIPSIS)


def test_a_list_as_documented() -> None:
    content = {
        "type": "list",
        "text": "Escolha a especialidade",
        "header": "Especialidades",
        "footer": "Atendimento de seg. a sex.",
        "list": {
            "button": "Ver opções",
            "sections": [
                {
                    "title": "Clínica",
                    "rows": [
                        {"id": "cardio", "title": "Cardiologia", "description": "Dr. Ana"},
                        {"id": "derma", "title": "Dermatologia"},
                    ],
                },
                {"title": "Exames", "rows": [{"id": "sangue", "title": "Sangue"}]},
            ],
        },
    }
    assert body(content) == documented(
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "header": {"type": "text", "text": "Especialidades"},
                "body": {"text": "Escolha a especialidade"},
                "footer": {"text": "Atendimento de seg. a sex."},
                "action": {
                    "button": "Ver opções",
                    "sections": [
                        {
                            "title": "Clínica",
                            "rows": [
                                {"id": "cardio", "title": "Cardiologia", "description": "Dr. Ana"},
                                {"id": "derma", "title": "Dermatologia"},
                            ],
                        },
                        {"title": "Exames", "rows": [{"id": "sangue", "title": "Sangue"}]},
                    ],
                },
            },
        }
    )


def test_a_single_untitled_section_has_no_title() -> None:
    content = {
        "type": "list",
        "text": "Escolha",
        "list": {"button": "Opções", "sections": [{"rows": [{"id": "a", "title": "A"}]}]},
    }
    assert body(content)["interactive"]["action"]["sections"] == [
        {"rows": [{"id": "a", "title": "A"}]}
    ]


@pytest.mark.parametrize(
    ("kind", "documented_object"),
    [
        ("image", {"link": "https://cdn.example/a.jpg", "caption": "Nossa fachada"}),
        ("video", {"link": "https://cdn.example/a.jpg", "caption": "Nossa fachada"}),
        # audio and stickers carry no caption on WhatsApp
        ("audio", {"link": "https://cdn.example/a.jpg"}),
        ("sticker", {"link": "https://cdn.example/a.jpg"}),
        (
            "document",
            {
                "link": "https://cdn.example/a.jpg",
                "caption": "Nossa fachada",
                "filename": "fachada.pdf",
            },
        ),
    ],
)
def test_media_by_link_as_documented(kind: str, documented_object: dict[str, Any]) -> None:
    media = {"kind": kind, "url": "https://cdn.example/a.jpg", "caption": "Nossa fachada"}
    if kind == "document":
        media["filename"] = "fachada.pdf"
    content = {"type": "media", "text": "", "media": media}
    assert body(content) == documented({"type": kind, kind: documented_object})


def test_a_media_caption_shows_the_text_and_the_caption() -> None:
    media = {"kind": "image", "url": "https://cdn.example/m.png", "caption": "Mapa"}
    shown = body({"type": "media", "text": "Veja como chegar", "media": media})
    assert shown["image"] == {
        "link": "https://cdn.example/m.png",
        "caption": "Veja como chegar\n\nMapa",
    }
    alone = body({"type": "media", "text": "Só o texto", "media": {**media, "caption": None}})
    assert alone["image"]["caption"] == "Só o texto"
    long = body({"type": "media", "text": "t" * 900, "media": {**media, "caption": "c" * 900}})
    assert len(long["image"]["caption"]) == MAX_CAPTION


def test_a_location_as_documented() -> None:
    place = {
        "latitude": -23.561414,
        "longitude": -46.655881,
        "name": "Clínica Boa Saúde",
        "address": "Av. Paulista, 1000 - São Paulo",
    }
    assert body({"type": "location", "text": "", "location": place}) == documented(
        {"type": "location", "location": place}
    )
    bare = body({"type": "location", "location": {"latitude": 1, "longitude": 2}})
    assert bare["location"] == {"latitude": 1.0, "longitude": 2.0}


def test_a_template_as_documented() -> None:
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "confirmar"}],
        },
    ]
    content = {
        "type": "template",
        "text": "Olá Ana, confirma sua consulta?",
        "template": {"name": "lembrete_consulta", "language": "pt_BR", "components": components},
    }
    assert body(content) == documented(
        {
            "type": "template",
            "template": {
                "name": "lembrete_consulta",
                "language": {"code": "pt_BR"},
                "components": components,
            },
        }
    )


def test_a_template_language_is_written_metas_way_and_components_may_be_absent() -> None:
    content = {"type": "template", "template": {"name": "hello_world", "language": "en-US"}}
    assert body(content)["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_the_template_alternative_of_a_message() -> None:
    template = {"name": "retomar", "language": "pt_BR", "components": []}
    assert template_alternative({"type": "buttons", "template": template}) == template
    assert template_alternative({"type": "text", "text": "oi"}) is None
    assert template_alternative(None) is None
    assert template_alternative({"type": "template", "template": template}) is None


def test_an_unknown_content_type_is_sent_as_its_plain_text() -> None:
    assert body({"type": "carousel", "cards": []}, "as text")["text"]["body"] == "as text"


def test_a_long_plain_text_is_cut_to_4096() -> None:
    shown = body(None, "y" * (MAX_BODY + 10))["text"]["body"]
    assert len(shown) == MAX_BODY and shown.endswith(ELLIPSIS)


@pytest.mark.parametrize(
    ("content", "text", "why"),
    [
        (None, "   ", "empty text"),
        ({"type": "buttons", "text": "x", "buttons": []}, "", "without buttons"),
        (
            {
                "type": "buttons",
                "text": "x",
                "buttons": [{"id": str(i), "title": "t"} for i in range(4)],
            },
            "",
            "at most 3",
        ),
        ({"type": "buttons", "text": " ", "buttons": [{"id": "a", "title": "A"}]}, "", "a text"),
        ({"type": "list", "text": "x", "list": {"button": "b", "sections": []}}, "", "sections"),
        ({"type": "list", "text": "x", "list": {"sections": [{"rows": [{}]}]}}, "", "content"),
        ({"type": "media", "media": {"kind": "gif", "url": "https://x"}}, "", "known kind"),
        ({"type": "media", "media": {"kind": "image", "url": "ftp://x"}}, "", "http(s)"),
        ({"type": "location", "location": {"latitude": "north"}}, "", "content"),
        ({"type": "template"}, "", "without its template"),
        ({"type": "template", "template": {"language": "pt_BR"}}, "", "its name"),
        ({"type": "template", "template": {"name": "t", "language": "x"}}, "", "language"),
        (
            {"type": "template", "template": {"name": "t", "language": "pt", "components": [1]}},
            "",
            "each component",
        ),
    ],
)
def test_what_cannot_be_sent_says_why(content: Any, text: str, why: str) -> None:
    with pytest.raises(Unsendable, match=why.replace("(", r"\(").replace(")", r"\)")):
        body(content, text)


def test_the_callback_data_is_the_idempotency_key_within_metas_512() -> None:
    shown = request_body(TO, "oi", None, callback_data="k" * 600)
    assert shown["biz_opaque_callback_data"] == "k" * 512
