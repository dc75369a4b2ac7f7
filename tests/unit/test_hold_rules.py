"""The pure parts of a person's hold: the handoff node's publish checks, what a hold is
and where a handback goes, the keys, the person's structured messages, what the desk
may see of the variables, and the invariants of a held execution."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from trilha.core.execution import Execution, InboundMessage, iso
from trilha.core.flow import flow_json_schema, load_flow, parse_flow
from trilha.core.hold import (
    agent_key,
    handback_target,
    held,
    hold_state,
    hold_view,
    return_target,
)
from trilha.core.invariants import Records, check
from trilha.core.states import ExecutionStatus
from trilha.errors import FlowError
from trilha.observability.masking import hide_credentials
from trilha.outbound import OutboundContent

S = ExecutionStatus
NOW = 1_800_000_000.0


def flow(**handoff: Any) -> dict[str, Any]:
    return {
        "id": "f",
        "start": "desk",
        "nodes": [
            {"id": "desk", "type": "handoff", "queue": "q", **handoff},
            {"id": "survey", "type": "end", "text": "How did we do?"},
            {"id": "sorry", "type": "end", "text": "Sorry."},
        ],
    }


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in parse_flow(data)[1]]


@pytest.mark.parametrize(
    ("handoff", "expected"),
    [
        ({"mode": "wait", "next": "survey"}, None),
        (
            {
                "mode": "wait",
                "next": "survey",
                "returnAfterSeconds": 60,
                "onReturnTimeout": "sorry",
            },
            None,
        ),
        ({"returnAfterSeconds": 60}, "nodes[0].returnAfterSeconds: only for mode 'wait'"),
        ({"onReturnTimeout": "sorry"}, "nodes[0].onReturnTimeout: only for mode 'wait'"),
        (
            {"mode": "wait", "returnAfterSeconds": 60},
            "nodes[0].returnAfterSeconds: needs onReturnTimeout or next",
        ),
        (
            {"mode": "wait", "next": "survey", "onReturnTimeout": "sorry"},
            "nodes[0].onReturnTimeout: needs returnAfterSeconds",
        ),
        (
            {"mode": "wait", "next": "survey", "returnAfterSeconds": 5, "onReturnTimeout": "x"},
            "nodes[0].onReturnTimeout: no node 'x' in flow 'f'",
        ),
        ({"mode": "later"}, "nodes[0].mode: Input should be 'end' or 'wait'"),
        ({"mode": "wait", "next": "survey", "returnAfterSeconds": 0}, "greater than 0"),
    ],
)
def test_publish_checks(handoff: dict[str, Any], expected: str | None) -> None:
    """A wait handoff knows where the bot takes the conversation back; an end one has no
    use for the wait's fields; every problem names its field."""
    found = [p for p in problems(flow(**handoff)) if "warning" not in p]
    if expected is None:
        assert found == []
    else:
        assert any(expected in p for p in found), found


def test_a_wait_handoff_without_next_is_a_warning() -> None:
    """Every handback must then name its node: said at publish, not refused."""
    assert "nodes[0].next: warning: a 'wait' handoff with no next" in " ".join(
        problems(flow(mode="wait"))
    )
    assert load_flow(flow(mode="wait")) is not None


def test_the_schema_documents_the_mode() -> None:
    schema = str(flow_json_schema())
    for name in ("returnAfterSeconds", "onReturnTimeout", "'wait'"):
        assert name in schema


def execution(status: S = S.PAUSED, **fields: Any) -> Execution:
    fields.setdefault("waiting_for", "human" if status is S.PAUSED else None)
    return Execution(
        id="ex-1",
        institution_id="acme",
        conversation_id="conv-1",
        contact_id="c",
        flow_id="f",
        flow_version=1,
        status=status,
        current_node_id="desk",
        variables={},
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def test_a_hold_is_told_from_an_operators_pause() -> None:
    ex = execution(node_state=hold_state("q", "why", NOW), due_at=NOW + 60)
    assert held(ex)
    assert hold_view(ex) == {
        "queue": "q",
        "reason": "why",
        "since": iso(NOW),
        "nodeId": "desk",
        "returnAt": iso(NOW + 60),
    }
    paused = execution(waiting_for="operator", paused_from=S.WAITING_INPUT)
    assert not held(paused) and hold_view(paused) is None
    assert not held(execution(S.WAITING_INPUT, waiting_for="input"))


def test_where_a_handback_goes() -> None:
    f = load_flow(flow(mode="wait", next="survey", returnAfterSeconds=9, onReturnTimeout="sorry"))
    ex = execution()
    assert handback_target(f, ex, None) == "survey"
    assert handback_target(f, ex, "sorry") == "sorry"
    assert return_target(f, ex) == "sorry"
    with pytest.raises(FlowError, match="no node 'gone' in flow 'f' v1"):
        handback_target(f, ex, "gone")
    bare = load_flow(flow(mode="wait"))
    with pytest.raises(FlowError, match="has no next: name the node"):
        handback_target(bare, ex, None)
    assert return_target(load_flow(flow(mode="wait", next="survey")), ex) == "survey"


@pytest.mark.parametrize("message_id", ["m-1", "x:end", "", "ü" * 200])
def test_an_agent_key_is_per_message_and_never_a_final_notice(message_id: str) -> None:
    key = agent_key("ex-1", 3, message_id)
    assert key.startswith("ex-1:3:agent-") and not key.endswith(":end")
    assert key != agent_key("ex-1", 3, message_id + "!")
    assert key == agent_key("ex-1", 3, message_id)


def content(**fields: Any) -> OutboundContent:
    return OutboundContent.model_validate(fields)


def test_a_persons_structured_message_is_checked_and_degraded() -> None:
    """The rich outbound form, within WhatsApp's limits; shown as text where the channel
    cannot show it, as the bot's messages are."""
    buttons = content(type="buttons", text="Better?", buttons=[{"id": "y", "title": "Yes"}])
    said = buttons.said(frozenset({"buttons"}))
    assert said.content == {"type": "buttons", "text": "Better?", "buttons": [
        {"id": "y", "title": "Yes"}]}  # fmt: skip
    assert said.text == "Better?\n\n1. Yes"
    plain = buttons.said(frozenset())
    assert plain.content is not None and plain.content["type"] == "text"
    assert plain.degraded
    place = content(type="location", location={"latitude": -23.5, "longitude": -46.6})
    assert place.said(frozenset({"location"})).content == {
        "type": "location",
        "text": "",
        "location": {"latitude": -23.5, "longitude": -46.6},
    }
    assert content(type="text", text="hi").said(frozenset()).content is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "buttons", "text": "t"}, "buttons: required when type is 'buttons'"),
        ({"type": "text", "text": " "}, "text: required (not blank)"),
        (
            {"type": "text", "text": "t", "media": {"kind": "image", "url": "https://x/y"}},
            "media: only for type 'media'",
        ),
        ({"type": "media", "media": {"kind": "image", "url": "ftp://x/y"}}, "http(s) URL"),
        (
            {"type": "buttons", "text": "t", "buttons": [{"id": "a", "title": "x" * 21}]},
            "at most 20 characters",
        ),
        (
            {
                "type": "buttons",
                "text": "t",
                "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}],
            },
            "must be different",
        ),
        (
            {
                "type": "list",
                "text": "t",
                "list": {
                    "button": "Open",
                    "sections": [{"rows": [{"id": str(i), "title": "r"} for i in range(3)]}] * 2,
                },
            },
            "every section needs a title",
        ),
        (
            {
                "type": "list",
                "text": "t",
                "list": {
                    "button": "Open",
                    "sections": [
                        {
                            "title": str(s),
                            "rows": [{"id": f"{s}{i}", "title": "r"} for i in range(6)],
                        }
                        for s in range(2)
                    ],
                },
            },
            "12 rows; at most 10 in all",
        ),
        ({"type": "text", "text": "t", "header": "h"}, "header and footer: only for type"),
        ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "less than or equal"),
        ({"type": "text", "text": "x" * 4097}, "at most 4096 characters"),
    ],
)
def test_a_persons_structured_message_is_refused_naming_why(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        content(**fields)


def test_the_desk_sees_the_contacts_data_but_no_credential() -> None:
    variables = {
        "cpf": "123.456.789-09",
        "phone": "+55 11 98765-4321",
        "crm": {"apiToken": "t", "access_token": "a", "password": None, "plan": "gold"},
        "list": [{"secret": "s", "name": "Ana"}],
    }
    assert hide_credentials(variables) == {
        "cpf": "123.456.789-09",
        "phone": "+55 11 98765-4321",
        "crm": {
            "apiToken": "[masked]",
            "access_token": "[masked]",
            "password": None,
            "plan": "gold",
        },
        "list": [{"secret": "[masked]", "name": "Ana"}],
    }
    assert variables["crm"]["apiToken"] == "t"  # a copy


def findings(ex: Execution, *inbox: InboundMessage) -> list[tuple[str, str]]:
    """What the state and inbox rules say of ``ex`` (its history is not the point here)."""
    found = check(Records(execution=ex, inbox=inbox), now=NOW)
    return [(v.rule, v.detail) for v in found if v.rule in ("state", "inbox", "overdue")]


def test_a_held_execution_keeps_the_invariants() -> None:
    """Waiting for a person with or without a return time is a named wait; a return
    time with nothing to wake it is not; held replies need no step that read them."""
    assert findings(execution()) == []
    assert findings(execution(due_at=NOW + 60, wake_at=NOW + 60)) == []
    assert findings(execution(due_at=NOW + 60, wake_at=None)) == [
        ("state", "held by a person with a return time but nothing to wake it")
    ]
    held_reply = InboundMessage(1, "acme", "conv-1", "m-1", "c", "hello?", NOW, "ex-1",
                                applied_at=NOW, held_at=NOW)  # fmt: skip
    assert findings(execution(), held_reply) == []
    read = InboundMessage(1, "acme", "conv-1", "m-1", "c", "hello?", NOW, "ex-1", applied_at=NOW)
    assert findings(execution(), read) == [
        ("inbox", "message m-1 is marked applied but no step read it")
    ]
