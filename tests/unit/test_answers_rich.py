"""Answers to rich questions (issue 15): a choice from buttons or list rows, media and
locations, and replies of the wrong type."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.answers import Accepted, Refused, check_answer
from trilha.core.flow import AnswerRule


def rule(**kwargs: Any) -> AnswerRule:
    return AnswerRule.model_validate(kwargs)


CHOICE = rule(kind="choice")
#: the options a question showed, as it keeps them in its node state
OFFERED = [
    {"id": "agendar", "title": "Agendar", "synonyms": ["marcar", "consulta"]},
    {"id": "precos", "title": "Preços"},
    {"id": "humano", "title": "Falar com alguém"},
]


def pressed(reply_id: str, kind: str = "button") -> dict[str, Any]:
    return {"type": kind, "replyId": reply_id}


def test_the_pressed_reply_id_comes_first() -> None:
    """A pressed button's id decides, even when its text is another option's title."""
    assert check_answer(CHOICE, "Agendar", pressed("precos"), OFFERED) == Accepted("precos")
    assert check_answer(CHOICE, "", pressed("humano", "list"), OFFERED) == Accepted("humano")


def test_an_unknown_reply_id_falls_back_to_the_text() -> None:
    """An id the question did not show (an older message's button) is read as its text."""
    assert check_answer(CHOICE, "Preços", pressed("old-menu"), OFFERED) == Accepted("precos")
    assert check_answer(CHOICE, "", pressed("old-menu"), OFFERED) == Refused("empty answer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agendar", "agendar"),  # the id typed
        ("AGENDAR!", "agendar"),  # case and trailing punctuation folded
        ("precos", "precos"),
        ("PREÇOS", "precos"),  # the title, accents folded
        ("  falar com alguem.", "humano"),
        ("Marcar", "agendar"),  # a synonym
        ("consulta", "agendar"),
        ("2", "precos"),  # the number of a numbered text
        ("3.", "humano"),
        ("03", "humano"),
        ("١", "agendar"),  # an Arabic-Indic one
        ("²", "precos"),  # folded to 2
    ],
)
def test_a_typed_reply_matches_id_title_synonyms_then_number(text: str, expected: str) -> None:
    """A typed reply matches an option's id, title or synonym (folded), then its number."""
    assert check_answer(CHOICE, text, None, OFFERED) == Accepted(expected)


@pytest.mark.parametrize(
    "text", ["0", "4", "00", "99999", "1" * 5_000, "\U00010a40", "talvez", "   ", "1 2"]
)
def test_a_reply_that_is_no_option_is_refused(text: str) -> None:
    """Out-of-range numbers, digits int() cannot read, huge numbers and other words are refused."""
    verdict = check_answer(CHOICE, text, None, OFFERED)
    assert isinstance(verdict, Refused)


def test_a_title_that_is_a_number_wins_over_the_position() -> None:
    """Ids, titles and synonyms are matched before a number is read as a position."""
    offered = [{"id": "x", "title": "Sala 2"}, {"id": "y", "title": "2"}, {"id": "z", "title": "3"}]
    assert check_answer(CHOICE, "2", None, offered) == Accepted("y")
    assert check_answer(CHOICE, "1", None, offered) == Accepted("x")


def test_options_written_on_the_rule_still_serve() -> None:
    """Without buttons or rows shown, the rule's own options are matched as before."""
    r = rule(kind="choice", options=["sim", {"value": "nao", "label": "Não", "synonyms": ["n"]}])
    assert check_answer(r, "NÃO", None, None) == Accepted("nao")
    assert check_answer(r, "n", None, []) == Accepted("nao")
    assert check_answer(r, "1", None, None) == Accepted("sim")
    assert isinstance(check_answer(r, "\U00010a40", None, None), Refused)
    assert isinstance(check_answer(r, "1" * 5_000, None, None), Refused)


PHOTO = {
    "type": "media",
    "media": {
        "kind": "image",
        "url": "https://cdn.test/card.jpg",
        "mimeType": "image/jpeg",
        "caption": "meu cartão",
    },
}
PDF = {
    "type": "media",
    "media": {
        "kind": "document",
        "url": "https://cdn.test/card.pdf",
        "mimeType": "application/pdf",
        "filename": "card.pdf",
    },
}
PLACE = {
    "type": "location",
    "location": {
        "latitude": -23.5613,
        "longitude": -46.6565,
        "name": "Casa",
        "address": "Rua Augusta, 500",
    },
}


@pytest.mark.parametrize(
    ("kind", "text", "content", "reason"),
    [
        ("text", "", PHOTO, "expected a typed answer, got media"),
        ("number", "", PLACE, "expected a typed answer, got location"),
        ("choice", "", PHOTO, "expected a typed answer, got media"),
        ("media", "here it is", None, "expected media, got text"),
        ("media", "Agendar", pressed("agendar"), "expected media, got button"),
        ("media", "", PLACE, "expected media, got location"),
        ("location", "Rua Augusta", None, "expected a location, got text"),
        ("location", "", PHOTO, "expected a location, got media"),
        ("location", "", {"type": "location"}, "expected a location, got location"),
        ("media", "", {"type": "media"}, "expected media, got none"),
    ],
)
def test_a_reply_of_the_wrong_type_is_refused(
    kind: str, text: str, content: dict[str, Any] | None, reason: str
) -> None:
    """A photo to a typed question, a text to a media or location question: refused, said why."""
    options = {"options": ["a"]} if kind == "choice" else {}
    assert check_answer(rule(kind=kind, **options), text, content, None) == Refused(reason)


def test_a_media_answer_is_kept_whole() -> None:
    """The saved value is the media as received: url, MIME type, caption, file name."""
    assert check_answer(rule(kind="media"), "", PHOTO) == Accepted(PHOTO["media"])
    assert check_answer(rule(kind="media"), "", PDF) == Accepted(PDF["media"])


@pytest.mark.parametrize(
    ("accept", "mime", "accepted"),
    [
        (["image/*"], "image/jpeg", True),
        (["image/*"], "image/png", True),
        (["image/*"], "IMAGE/WEBP", True),
        (["image/*"], "application/pdf", False),
        (["image/*"], "imagex/png", False),
        (["application/pdf"], "application/pdf", True),
        (["application/pdf"], "application/pdf; charset=binary", True),
        (["application/pdf"], "application/pdfx", False),
        (["image/*", "application/pdf"], "application/pdf", True),
        (["image/*", "application/pdf"], "video/mp4", False),
        ([], "video/mp4", True),  # no accept: any media
        ([], None, True),
        (["image/*"], None, False),
    ],
)
def test_media_accept_patterns(accept: list[str], mime: str | None, accepted: bool) -> None:
    """accept lists MIME types or families (image/*); empty accepts any media."""
    media: dict[str, Any] = {"kind": "document", "url": "https://cdn.test/x"}
    if mime is not None:
        media["mimeType"] = mime
    verdict = check_answer(rule(kind="media", accept=accept), "", {"type": "media", "media": media})
    assert isinstance(verdict, Accepted) is accepted, verdict
    if not accepted:
        shown = mime.lower() if mime else "no MIME type"
        assert verdict == Refused(f"{shown} is not accepted (accept: {', '.join(accept)})")


def test_a_location_answer_is_kept_whole() -> None:
    """A location reply saves the place as sent: coordinates, name and address."""
    verdict = check_answer(rule(kind="location"), "", PLACE)
    assert verdict == Accepted(PLACE["location"])


def test_accept_must_be_a_mime_pattern() -> None:
    """An accept entry that is no MIME type or family is refused with its path."""
    with pytest.raises(ValueError, match=r"accept\.0"):
        rule(kind="media", accept=["image"])


contents = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "button", "list", "media", "location", "sticker"])},
        optional={
            "replyId": st.one_of(st.text(max_size=10), st.integers(), st.none()),
            "media": st.one_of(
                st.none(),
                st.text(max_size=5),
                st.fixed_dictionaries(
                    {}, optional={"mimeType": st.one_of(st.text(max_size=20), st.integers())}
                ),
            ),
            "location": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.floats())),
        },
    ),
)
offered_options = st.one_of(
    st.none(),
    st.lists(
        st.fixed_dictionaries(
            {"id": st.text(min_size=1, max_size=8), "title": st.text(max_size=8)},
            optional={"synonyms": st.lists(st.text(max_size=5), max_size=2)},
        ),
        max_size=12,
    ),
)
rules = st.sampled_from(
    [
        rule(kind="choice", options=["a", "b"]),
        rule(kind="choice"),
        rule(kind="media", accept=["image/*", "application/pdf"]),
        rule(kind="media"),
        rule(kind="location"),
        rule(kind="text"),
        rule(kind="number"),
    ]
)


@given(rules, st.text(max_size=50), contents, offered_options)
def test_checking_an_answer_never_raises(
    r: AnswerRule, text: str, content: dict[str, Any] | None, offered: Any
) -> None:
    """Whatever a contact or a platform sends, an answer is accepted or refused."""
    verdict = check_answer(r, text, content, offered)
    assert isinstance(verdict, Accepted | Refused)
    if isinstance(verdict, Accepted) and r.kind == "choice" and offered:
        assert verdict.value in {o["id"] for o in offered}
