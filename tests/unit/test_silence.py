"""Reminders and session expiry, the pure parts: publishing checks with paths, the
reminder schedule and the wake time (nothing here reads a clock or a store)."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.core.execution import Execution
from trilha.core.flow import MAX_REMINDERS, QuestionNode, parse_flow
from trilha.core.silence import (
    due_reminders,
    heard,
    heard_at,
    next_wake,
    schedule,
    session_meta,
    wait_due,
)
from trilha.core.states import ExecutionStatus

S = ExecutionStatus
T = 1_800_000_000.0


def asking(*reminders: dict[str, Any], **extra: Any) -> dict[str, Any]:
    settings = extra.pop("settings", {})
    return {
        "id": "f",
        "start": "ask",
        "settings": settings,
        "nodes": [
            {
                "id": "ask",
                "type": "question",
                "text": "CPF?",
                "variable": "cpf",
                "reminders": list(reminders),
                "next": "end",
                **extra,
            },
            {"id": "end", "type": "end"},
        ],
    }


def problems(data: dict[str, Any]) -> list[str]:
    flow, found = parse_flow(data)
    errors = [str(p) for p in found if p.severity == "error"]
    assert (flow is None) == bool(errors)
    return errors


def test_a_valid_schedule_publishes() -> None:
    """Increasing reminders before the timeout, texts by language, rich content: fine."""
    flow, found = parse_flow(
        asking(
            {"afterSeconds": 60, "text": {"pt-BR": "Ainda aí?", "en": "Still there?"}},
            {"afterSeconds": 120.5, "text": "Hi", "buttons": [{"id": "y", "title": "Yes"}]},
            {"afterSeconds": 180, "media": {"kind": "image", "url": "https://x.example/a.png"}},
            inputTimeoutSeconds=300,
            settings={"sessionTimeoutSeconds": 900, "expiryMessage": {"en": "Closed."}},
        )
    )
    assert flow is not None and [str(p) for p in found if p.severity == "error"] == []
    question = flow.node("ask")
    assert isinstance(question, QuestionNode)
    assert [r.after_seconds for r in question.reminders] == [60, 120.5, 180]
    assert flow.settings.session_timeout_seconds == 900
    assert flow.wire()["settings"]["sessionTimeoutSeconds"] == 900
    assert flow.wire()["nodes"][0]["reminders"][0]["afterSeconds"] == 60


def test_out_of_order_and_too_late_are_errors_with_paths() -> None:
    """Each reminder after the one before and before the input timeout in force (the
    node's, else the flow's), named by its path."""
    assert problems(
        asking(
            {"afterSeconds": 100, "text": "a"},
            {"afterSeconds": 100, "text": "b"},
            {"afterSeconds": 50, "text": "c"},
            {"afterSeconds": 400, "text": "d"},
            inputTimeoutSeconds=300,
        )
    ) == [
        "nodes[0].reminders[1].afterSeconds: 100 s is not after the reminder before it (100 s):"
        " reminders come in order",
        "nodes[0].reminders[2].afterSeconds: 50 s is not after the reminder before it (100 s):"
        " reminders come in order",
        "nodes[0].reminders[3].afterSeconds: 400 s is not before the question's"
        " inputTimeoutSeconds (300 s): the wait ends first",
    ]
    assert problems(
        asking({"afterSeconds": 60, "text": "a"}, settings={"inputTimeoutSeconds": 60})
    ) == [
        "nodes[0].reminders[0].afterSeconds: 60 s is not before the flow's"
        " settings.inputTimeoutSeconds (60 s): the wait ends first"
    ]


@pytest.mark.parametrize(
    ("reminder", "message"),
    [
        (
            {"afterSeconds": 0, "text": "a"},
            "reminders[0].afterSeconds: Input should be greater than 0",
        ),
        (
            {"afterSeconds": -5, "text": "a"},
            "reminders[0].afterSeconds: Input should be greater than 0",
        ),
        ({"text": "a"}, "reminders[0].afterSeconds: missing: this field is required"),
        (
            {"afterSeconds": 10},
            "reminders[0].text: missing: a reminder needs a text, media or a location",
        ),
        (
            {"afterSeconds": 10, "text": "{{name"},
            "reminders[0].text: '{{' at character 1 is not closed by '}}'",
        ),
        (
            {"afterSeconds": 10, "text": {"en": " "}},
            "reminders[0].text: every language's text is empty",
        ),
        ({"afterSeconds": 10, "text": "a", "colour": "red"}, "reminders[0].colour: unknown field"),
        (
            {"afterSeconds": 10, "buttons": [{"id": "y", "title": "Yes"}]},
            "reminders[0].text: missing: buttons and lists need a text",
        ),
    ],
)
def test_each_reminder_is_checked(reminder: dict[str, Any], message: str) -> None:
    """A bad reminder fails publishing with the field's path and the reason."""
    assert f"nodes[0].{message}" in problems(asking(reminder))


def test_reminders_are_bounded() -> None:
    """At most MAX_REMINDERS reminders per question."""
    many = [{"afterSeconds": i + 1, "text": "x"} for i in range(MAX_REMINDERS + 1)]
    assert problems(asking(*many)) == [
        f"nodes[0].reminders: List should have at most {MAX_REMINDERS} items after"
        f" validation, not {MAX_REMINDERS + 1}"
    ]
    assert problems(asking(*many[:MAX_REMINDERS])) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"sessionTimeoutSeconds": 0},
            "settings.sessionTimeoutSeconds: Input should be greater than 0",
        ),
        (
            {"sessionTimeoutSeconds": 31 * 86_400},
            "settings.sessionTimeoutSeconds: Input should be less than or equal to 2592000",
        ),
        (
            {"expiryMessage": {"xx_1": "a"}},
            "settings.expiryMessage.xx_1: 'xx_1' is not a language tag",
        ),
    ],
)
def test_session_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    found = problems(asking(settings=settings))
    assert any(p.startswith(message) for p in found), found


def test_a_reminder_in_one_language_only_is_warned() -> None:
    """A reminder missing a language the flow's other texts have is a warning."""
    data = asking({"afterSeconds": 10, "text": {"en": "Hi"}})
    data["nodes"][0]["text"] = {"en": "CPF?", "pt-BR": "CPF?"}
    flow, found = parse_flow(data)
    assert flow is not None
    assert (
        "nodes[0].reminders[0].text: warning: no text in pt-BR (other texts of the flow have one)"
        in [str(p) for p in found]
    )


def test_schedule_and_due_reminders() -> None:
    """The next reminder is counted from the wait's start; those due are listed in
    order, the ones said never again."""
    afters = [60.0, 120.0, 300.0]
    state = schedule(afters, T, 0)
    assert state == {"since": T, "reminded": 0, "remindAt": T + 60}
    assert due_reminders(afters, state, T + 59) == []
    assert due_reminders(afters, state, T + 60) == [0]
    assert due_reminders(afters, state, T + 200) == [0, 1]
    said_two = schedule(afters, T, 2)
    assert said_two["remindAt"] == T + 300 and due_reminders(afters, said_two, T + 200) == []
    assert "remindAt" not in schedule(afters, T, 3)
    assert due_reminders(afters, {}, T + 1000) == []  # no schedule: nothing due


def _ex(status: ExecutionStatus, **fields: Any) -> Execution:
    return Execution(
        id="e",
        institution_id="i",
        conversation_id="c",
        contact_id="k",
        flow_id="f",
        flow_version=1,
        status=status,
        current_node_id="ask",
        variables={},
        created_at=T,
        updated_at=T,
        **fields,
    )


def test_the_wake_is_the_earliest_of_due_reminder_and_expiry() -> None:
    """A reminder counts while waiting for input only; the expiry in every wait that
    expires, never while paused."""
    meta = session_meta({}, T, 900)
    assert meta == {"heardAt": T, "expiresAt": T + 900}
    state = {"remindAt": T + 60}
    assert next_wake(_ex(S.WAITING_INPUT, due_at=T + 3600, node_state=state, meta=meta)) == T + 60
    assert next_wake(_ex(S.WAITING_INPUT, due_at=T + 30, node_state=state, meta=meta)) == T + 30
    assert next_wake(_ex(S.WAITING_DELAY, due_at=T + 3600, node_state=state, meta=meta)) == T + 900
    assert next_wake(_ex(S.RECOVERING, due_at=T + 3600, meta=meta)) == T + 900
    assert next_wake(_ex(S.PAUSED, due_at=T + 3600, meta=meta)) == T + 3600
    assert next_wake(_ex(S.WAITING_DELAY)) is None
    assert wait_due(_ex(S.WAITING_INPUT, due_at=T + 3600, node_state=state), T + 60)
    assert not wait_due(_ex(S.WAITING_DELAY, due_at=T + 3600, node_state=state), T + 60)


def test_the_session_is_heard_forward_only() -> None:
    """Hearing the contact moves the session on, never back; without a limit its times
    are dropped (a jump to a flow with no session)."""
    meta = session_meta({"firstError": 1}, T + 100, 900)
    assert session_meta(meta, T + 50, 900) == meta  # an older time does not move it back
    assert session_meta(meta, T + 50, 60) == {
        "firstError": 1,
        "heardAt": T + 100,
        "expiresAt": T + 160,
    }
    assert session_meta(meta, T + 500, None) == {"firstError": 1}
    assert heard(meta, T + 400)["heardAt"] == T + 400
    assert heard(meta, T + 10) == meta
    assert heard({}, T + 10) == {}  # no session kept: nothing to move
    assert heard_at(_ex(S.WAITING_INPUT)) == T
    assert heard_at(_ex(S.WAITING_INPUT, meta={"heardAt": T + 7})) == T + 7
