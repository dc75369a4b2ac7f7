"""Keywords, triggers, a flow's interrupts and bursts, without a store: whole-word matching,
precedence, the rules a set of triggers obeys (here, in a flow and in trilha.toml), and
how a burst of messages is taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from trilha.config import load_config
from trilha.core.bursts import MAX_BURST, burst_of
from trilha.core.execution import InboundMessage
from trilha.core.flow import parse_flow
from trilha.core.keywords import KeywordIndex, matchable_text, repeated_keywords, words
from trilha.core.triggers import Trigger, TriggerSet, trigger_problems
from trilha.errors import ConfigError

# ---------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("atendente", "atendente"),
        ("Quero um ATENDENTE!", "atendente"),
        ("quero um atendênte", "atendente"),  # accents fold
        ("atendentes", None),  # whole words only
        ("pré-atendente", "atendente"),  # punctuation separates words
        ("quero FALAR com humano agora", "falar com humano"),
        ("falar humano com", None),  # a phrase is its words in a row
        ("", None),
        ("🙂 menu 🙂", "menu"),
        ("menu principal", "menu principal"),  # the longest keyword wins
    ],
)
def test_keywords_match_whole_folded_words(text: str, hit: str | None) -> None:
    """Case-, accent- and punctuation-insensitive, whole words, the longest first."""
    index = KeywordIndex(
        [("Atendente", "a"), ("falar com humano", "b"), ("menu", "c"), ("menu principal", "d")]
    )
    found = index.match(text)
    assert (found.keyword.lower() if found else None) == hit


def test_on_a_tie_the_first_listed_wins() -> None:
    """Two keywords of the same length in one message: the one listed first."""
    index = KeywordIndex([("menu", 1), ("oi", 2)])
    hit = index.match("oi, quero o menu")
    assert hit is not None and hit.value == 1


def test_matchable_text_leaves_out_what_the_contact_did_not_type() -> None:
    """A photo's words are its caption (not "[image]"); a place has none; a tap, its title."""
    photo = {"type": "media", "media": {"kind": "image", "url": "https://x", "caption": "menu"}}
    assert matchable_text("[image]", {"type": "media", "media": {"kind": "image"}}) == ""
    assert matchable_text("menu", photo) == "menu"
    assert matchable_text("Rua A", {"type": "location", "location": {}}) == ""
    assert matchable_text("Menu", {"type": "button", "replyId": "m", "text": "Menu"}) == "Menu"
    assert words("Olá, MUNDO!") == ("ola", "mundo")


def test_a_keyword_in_two_groups_names_both_places() -> None:
    """Repeats across groups are found (folded), repeats inside one are not."""
    found = list(repeated_keywords([["Oi", "oi"], ["menu"], ["OI!"]]))
    assert found == [((0, 0), (2, 0), "OI!")]


# ---------------------------------------------------------------------------- triggers


def test_trigger_shapes() -> None:
    """Keywords or default, not both; no interrupting default; bounded keywords."""
    Trigger(keywords=["oi"], flow_id="clinic")
    Trigger(default=True, flow_id="welcome")
    for bad, says in [
        ({"flowId": "x"}, "needs keywords"),
        ({"flowId": "x", "default": True, "keywords": ["oi"]}, "has no keywords"),
        ({"flowId": "x", "default": True, "interrupt": True}, "cannot interrupt"),
        ({"flowId": "x", "keywords": ["!!"]}, "no letters or digits"),
        ({"flowId": "x", "keywords": ["a" * 101]}, "at most 100"),
        ({"flowId": "x", "keywords": [f"k{i}" for i in range(51)]}, "at most 50"),
        ({"flowId": "beta/secret", "keywords": ["oi"]}, "pattern"),
        ({"flowId": "x", "keywords": ["oi"], "priority": 1}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=says):
            Trigger.model_validate(bad)


def test_rules_across_triggers_name_both_places() -> None:
    """A second default and a repeated keyword are errors naming both triggers."""
    triggers = [
        Trigger(keywords=["oi", "menu"], flow_id="a"),
        Trigger(default=True, flow_id="b"),
        Trigger(keywords=["MENU"], flow_id="c"),
        Trigger(default=True, flow_id="d"),
    ]
    assert list(trigger_problems(triggers, "body[{}]".format)) == [
        ("body[3].default", "a second default trigger (body[1] is one): at most one"),
        (
            "body[2].keywords[0]",
            "keyword 'MENU' is also in body[0].keywords[1]: a keyword may start one flow only",
        ),
    ]


def test_a_trigger_set_matches_keywords_then_the_default() -> None:
    """Idle: a keyword's trigger, else the default; running: interrupting triggers only."""
    triggers = TriggerSet(
        [
            Trigger(keywords=["oi"], flow_id="clinic"),
            Trigger(keywords=["atendente"], flow_id="desk", interrupt=True),
            Trigger(default=True, flow_id="welcome"),
        ]
    )
    oi = triggers.match("Oi!")
    assert oi is not None and (oi.trigger.flow_id, oi.keyword, oi.position) == ("clinic", "oi", 0)
    other = triggers.match("bom dia")
    assert other is not None and other.trigger.flow_id == "welcome" and other.keyword is None
    desk = triggers.match("atendente")
    assert desk is not None and desk.trigger.flow_id == "desk"
    assert triggers.interrupts
    assert triggers.interrupt("oi") is None
    hit = triggers.interrupt("um atendente por favor")
    assert hit is not None and hit.wire() == {
        "flowId": "desk",
        "keyword": "atendente",
        "default": False,
        "interrupt": True,
        "position": 1,
    }
    assert TriggerSet([Trigger(keywords=["oi"], flow_id="x")]).match("tchau") is None
    assert not TriggerSet([Trigger(keywords=["oi"], flow_id="x")]).interrupts


# ---------------------------------------------------------------------- trilha.toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trilha.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_triggers_belong_to_their_institution(tmp_path: Path) -> None:
    """[[triggers]] with an institution key; each institution's in the file's order."""
    config = load_config(
        write(
            tmp_path,
            '[[triggers]]\ninstitution = "acme"\nkeywords = ["oi", "menu"]\nflow_id = "clinic"\n'
            '[[triggers]]\ninstitution = "beta"\nkeywords = ["oi"]\nflowId = "other"\n'
            '[[triggers]]\ninstitution = "acme"\ndefault = true\nflow_id = "welcome"\n',
        )
    )
    acme = config.triggers_of("acme")
    assert [(t.flow_id, t.keywords, t.default) for t in acme] == [
        ("clinic", ["oi", "menu"], False),
        ("welcome", [], True),
    ]
    assert [t.flow_id for t in config.triggers_of("beta")] == ["other"]
    assert config.triggers_of("gamma") == []


def test_config_triggers_obey_the_rules_per_institution(tmp_path: Path) -> None:
    """A keyword repeated within one institution is named by its places in the file; the
    same keyword in two institutions is fine."""
    with pytest.raises(ConfigError, match=r"triggers\[2\]\.keywords\[0\].*triggers\[0\]"):
        load_config(
            write(
                tmp_path,
                '[[triggers]]\ninstitution = "acme"\nkeywords = ["menu"]\nflow_id = "a"\n'
                '[[triggers]]\ninstitution = "beta"\nkeywords = ["menu"]\nflow_id = "b"\n'
                '[[triggers]]\ninstitution = "acme"\nkeywords = ["Menu"]\nflow_id = "c"\n',
            )
        )
    with pytest.raises(ConfigError, match="institution"):
        load_config(write(tmp_path, '[[triggers]]\nkeywords = ["oi"]\nflow_id = "a"\n'))


# ------------------------------------------------------------------------- interrupts


def flow(**extra: Any) -> dict[str, Any]:
    return {
        "id": "f",
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "question", "text": "?", "variable": "v", "next": "end"},
            {"id": "end", "type": "end"},
            {"id": "to_desk", "type": "handoff", "queue": "desk"},
        ],
        **extra,
    }


def test_an_interrupts_node_is_checked_at_publish() -> None:
    """goTo must be a node of the flow; a node reached only by an interrupt is reachable."""
    parsed, problems = parse_flow(flow(interrupts=[{"keywords": ["atendente"], "goTo": "to_desk"}]))
    assert parsed is not None and problems == []
    _, problems = parse_flow(flow(interrupts=[{"keywords": ["atendente"], "goTo": "nowhere"}]))
    errors = [str(p) for p in problems if p.severity == "error"]
    assert errors == ["interrupts[0].goTo: no node 'nowhere' in flow 'f'"]
    _, problems = parse_flow(flow())
    assert [p.severity for p in problems] == ["warning"]  # to_desk unreachable without it


@pytest.mark.parametrize(
    ("interrupts", "says"),
    [
        (
            [
                {"keywords": ["atendente"], "goTo": "to_desk"},
                {"keywords": ["ATENDENTE"], "goTo": "ask"},
            ],
            "interrupts[1].keywords[0]: keyword 'ATENDENTE' is also in interrupts[0].keywords[0]",
        ),
        ([{"keywords": [], "goTo": "ask"}], "interrupts[0].keywords: List should have at least 1"),
        ([{"keywords": ["..."], "goTo": "ask"}], "interrupts[0].keywords[0]: keyword '...' has no"),
        ([{"keywords": ["oi"]}], "interrupts[0].goTo: missing"),
        ([{"keywords": ["oi"], "goTo": "ask"}] * 51, "interrupts: List should have at most 50"),
    ],
)
def test_bad_interrupts_are_refused_by_path(interrupts: list[Any], says: str) -> None:
    """Each problem names its place: a repeated keyword both of them."""
    parsed, problems = parse_flow(flow(interrupts=interrupts))
    assert parsed is None
    assert any(str(p).startswith(says) for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize(("value", "ok"), [(0, True), (60_000, True), (60_001, False), (-1, False)])
def test_debounce_is_bounded(value: int, ok: bool) -> None:
    """settings.debounceMs: 0 to 60,000."""
    parsed, problems = parse_flow(flow(settings={"debounceMs": value}))
    assert (parsed is not None) is ok, problems
    if not ok:
        assert problems[0].path == "settings.debounceMs"


# ----------------------------------------------------------------------------- bursts


def inbound(n: int, at: float, kind: str = "text") -> InboundMessage:
    content = None if kind == "text" else {"type": kind, "replyId": "x", "text": f"t{n}"}
    return InboundMessage(n, "i", "c", f"m{n}", "k", f"t{n}", at, "e", None, None, content)


def test_a_burst_waits_for_its_window_after_the_last_text() -> None:
    """Texts wait until the window after the last one, then join with newlines."""
    burst = burst_of([inbound(1, 10.0), inbound(2, 11.0)], 2.0)
    assert burst is not None and burst.ready_at == 13.0
    merged = burst.merged()
    assert (merged.id, merged.message_id, merged.text) == (2, "m2", "t1\nt2")


def test_what_closes_a_burst() -> None:
    """A reply that is not a text is taken alone at once and closes the texts before it;
    no window takes one at a time; a full burst is taken at once."""
    tapped = burst_of([inbound(1, 10.0, "button"), inbound(2, 10.0)], 2.0)
    assert tapped is not None and tapped.ready_at is None and len(tapped.messages) == 1
    closed = burst_of([inbound(1, 10.0), inbound(2, 10.0), inbound(3, 10.0, "list")], 2.0)
    assert closed is not None and closed.ready_at is None and len(closed.messages) == 2
    single = burst_of([inbound(1, 10.0), inbound(2, 10.0)], 0)
    assert single is not None and single.ready_at is None and len(single.messages) == 1
    full = burst_of([inbound(i, 10.0) for i in range(MAX_BURST + 1)], 2.0)
    assert full is not None and full.ready_at is None and len(full.messages) == MAX_BURST
    assert burst_of([], 2.0) is None


def test_a_burst_keeps_the_latest_language() -> None:
    """A language any of its messages said is the merged reply's."""
    first = InboundMessage(
        1, "i", "c", "m1", "k", "hello", 1.0, content={"type": "text", "language": "en"}
    )
    burst = burst_of([first, inbound(2, 1.5)], 1.0)
    assert burst is not None
    assert burst.merged().content == {"type": "text", "text": "hello\nt2", "language": "en"}
