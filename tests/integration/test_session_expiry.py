"""``settings.sessionTimeoutSeconds`` through the engine over a real SQLite store and a
fake clock: a contact silent that long ends the execution with outcome ``expired`` after
``settings.expiryMessage``, from every kind of wait; a message pushes the deadline back;
an operator's pause holds it and a resume starts the silence over."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from typing import Any

from trilha.config import Config, DependencyConfig
from trilha.core.execution import iso
from trilha.core.states import ExecutionStatus, Outcome, is_allowed
from trilha.engine.operator import Operator
from trilha.engine.sweeper import Sweeper
from trilha.observability.checker import check_execution
from trilha.store.base import ExecutionFilter

S = ExecutionStatus

EXPIRY = {"pt-BR": "Encerramos por inatividade.", "en": "We closed this chat for inactivity."}


def session(*nodes: dict[str, Any], limit: float = 1800, **settings: Any) -> dict[str, Any]:
    return {
        "id": "s",
        "start": nodes[0]["id"],
        "settings": {"sessionTimeoutSeconds": limit, "expiryMessage": EXPIRY, **settings},
        "nodes": [*nodes, {"id": "bye", "type": "end", "text": "Bye."}],
    }


def question(node_id: str, then: str = "bye") -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "question",
        "text": f"{node_id}?",
        "variable": node_id,
        "next": then,
    }


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def states(h: Any, execution_id: str) -> list[str]:
    """The state history's targets, checked against the one transition table."""
    rows = await h.store.transitions(execution_id)
    for prev, cur in itertools.pairwise(rows):
        assert cur.source is prev.target and is_allowed(cur.source, cur.target)
    return [t.target.value for t in rows]


async def at(h: Any, seconds: float, start: float, execution_id: str) -> Any:
    """Move the clock to ``start + seconds`` and let the worker do what is due; what it
    left passes ``trilha check``."""
    h.clock.advance(start + seconds - h.clock.now())
    await h.settle()
    found = await check_execution(h.store, execution_id, now=h.clock.now(), grace=60.0)
    assert found is not None and [v for v in found if v.severity == "error"] == []
    return await h.get(execution_id)


async def assert_expired(h: Any, execution_id: str, said: str) -> None:
    ex = await h.get(execution_id)
    assert ex.status is S.TIMEOUT and ex.outcome is Outcome.EXPIRED
    assert ex.wake_at is None and ex.ended_at == h.clock.now()
    assert (await bot_texts(h, execution_id))[-1] == said
    lines = {r.message: r.context for r in await h.store.logs(execution_id)}
    assert lines["execution.ended"]["outcome"] == "expired"
    assert lines["session.expired"]["sessionTimeoutSeconds"] == 1800


async def test_expires_from_waiting_input_in_the_contacts_language(harness: Any) -> None:
    """A question waits a day for its reply, but the session ends after 1800 s of
    silence: outcome expired, state timeout, the expiry message in the contact's language."""
    await harness.publish(session(question("name")))
    t0 = harness.clock.now()
    ex = await harness.start("s", variables={"contact": {"language": "pt-BR"}})
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.due_at == t0 + 86_400 and ex.wake_at == t0 + 1800
    assert ex.meta["expiresAt"] == t0 + 1800
    ex = await at(harness, 1799, t0, ex.id)
    assert ex.status is S.WAITING_INPUT
    await at(harness, 1800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["pt-BR"])
    assert harness.channel.texts(ex.id) == ["name?", EXPIRY["pt-BR"]]
    assert (await states(harness, ex.id))[-2:] == ["waiting_input", "timeout"]
    listed = await harness.store.list_executions(where=ExecutionFilter(outcome="expired"))
    assert [e.id for e in listed] == [ex.id]
    assert await harness.store.list_executions(where=ExecutionFilter(outcome="timeout")) == []


async def test_a_reply_pushes_the_deadline_back(harness: Any) -> None:
    """Answering at 1000 s moves the expiry to 2800 s (1800 s after the reply)."""
    await harness.publish(session(question("first", "second"), question("second")))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    harness.clock.advance(1000)
    ex = await harness.reply(ex.id, "Ana")
    assert ex.current_node_id == "second" and ex.wake_at == t0 + 2800
    ex = await at(harness, 2799, t0, ex.id)
    assert ex.status is S.WAITING_INPUT
    await at(harness, 2800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])


async def test_expires_from_a_delay_unless_the_contact_wrote_during_it(harness: Any) -> None:
    """A long delay is cut short by the session's end; a message sent during the delay
    (stored, not applied) pushes the end back, and the execution sleeps again without a
    change of state."""
    await harness.publish(session({"id": "wait", "type": "delay", "seconds": 7200, "next": "bye"}))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.WAITING_DELAY and ex.wake_at == t0 + 1800
    harness.clock.advance(1000)
    await harness.engine.send(ex.id, "still here, just busy")
    before = await states(harness, ex.id)
    ex = await at(harness, 1800, t0, ex.id)
    assert ex.status is S.WAITING_DELAY and ex.wake_at == t0 + 2800
    assert ex.meta["heardAt"] == t0 + 1000
    assert await states(harness, ex.id) == before  # slept again: no state change
    extended = [r for r in await harness.store.logs(ex.id) if r.message == "session.extended"]
    assert [r.context["expiresAt"] for r in extended] == [iso(t0 + 2800)]
    ex = await at(harness, 2799, t0, ex.id)
    assert ex.status is S.WAITING_DELAY
    await at(harness, 2800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])
    assert (await states(harness, ex.id))[-2:] == ["waiting_delay", "timeout"]


async def test_expires_while_recovering(make_harness: Callable[..., Any], http_server: Any) -> None:
    """A retry backoff longer than the session (a turn may last a day here): the
    session ends it from recovering."""
    http_server.route("GET", "/down", status=503, body={})
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    await h.publish(
        session(
            {
                "id": "call",
                "type": "http",
                "dependency": "svc",
                "url": "/down",
                "retry": {
                    "maxAttempts": 5,
                    "initialIntervalSeconds": 3600,
                    "maxIntervalSeconds": 3600,
                    "jitter": False,
                },
                "next": "bye",
            },
            fallback={"timeoutSeconds": 86_400},  # a turn may wait out the backoff
        )
    )
    t0 = h.clock.now()
    ex = await h.start("s")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.RECOVERING and ex.due_at == t0 + 3600 and ex.wake_at == t0 + 1800
    await at(h, 1800, t0, ex.id)
    await assert_expired(h, ex.id, EXPIRY["en"])
    assert (await states(h, ex.id))[-2:] == ["recovering", "timeout"]
    assert len(http_server.requests) == 1


async def test_not_while_paused_and_a_resume_starts_the_silence_over(harness: Any) -> None:
    """Paused by an operator, it does not expire however long a person holds it; resumed
    at 5000 s, it expires 1800 s later, not at once."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(session(question("name")))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    harness.clock.advance(100)
    await operator.pause(ex.id)
    ex = await at(harness, 5000, t0, ex.id)
    assert ex.status is S.PAUSED
    resumed = await operator.resume(ex.id)
    assert resumed.status is S.WAITING_INPUT and resumed.wake_at == harness.clock.now()
    ex = await at(harness, 5001, t0, ex.id)
    assert ex.status is S.WAITING_INPUT and ex.wake_at == t0 + 6800
    ex = await at(harness, 6799, t0, ex.id)
    assert ex.status is S.WAITING_INPUT
    await at(harness, 6800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])


async def test_an_earlier_input_timeout_still_takes_on_timeout(harness: Any) -> None:
    """The question's own timeout (600 s) comes before the session's end: onTimeout runs,
    and the next wait expires on the session's clock."""
    ask = question("name") | {"inputTimeoutSeconds": 600, "onTimeout": "later"}
    later = question("later")
    await harness.publish(session(ask, later))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    ex = await at(harness, 600, t0, ex.id)
    assert ex.current_node_id == "later" and ex.wake_at == t0 + 1800
    await at(harness, 1800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])
    assert await bot_texts(harness, ex.id) == ["name?", "later?", EXPIRY["en"]]


async def test_expires_before_a_later_reminder(harness: Any) -> None:
    """Reminders due after the session's end are never said."""
    ask = question("name") | {
        "reminders": [
            {"afterSeconds": 600, "text": "Still there?"},
            {"afterSeconds": 3000, "text": "Hello?"},
        ],
        "inputTimeoutSeconds": 4000,
    }
    await harness.publish(session(ask))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    for second in (600, 1800):
        await at(harness, second, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])
    await at(harness, 4000, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["name?", "Still there?", EXPIRY["en"]]


async def test_without_an_expiry_message_nothing_is_said(harness: Any) -> None:
    """No expiryMessage: the execution expires in silence."""
    flow = session(question("name"))
    del flow["settings"]["expiryMessage"]
    await harness.publish(flow)
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    ex = await at(harness, 1800, t0, ex.id)
    assert ex.outcome is Outcome.EXPIRED
    assert await bot_texts(harness, ex.id) == ["name?"]


async def test_another_institutions_contact_does_not_keep_it_alive(harness: Any) -> None:
    """Two institutions, one conversation id: only the execution's own contact's
    messages push its deadline back."""
    await harness.publish(session(question("name")))
    t0 = harness.clock.now()
    ours = await harness.start("s", conversation="shared", institution_id="acme")
    theirs = await harness.start("s", conversation="shared", institution_id="beta")
    await harness.settle()
    harness.clock.advance(1000)
    await harness.store.deliver_inbound(
        institution_id="beta",
        conversation_id="shared",
        message_id="m-1",
        contact_id="contact-1",
        text="hi",
        payload=None,
        now=harness.clock.now(),
    )
    assert await harness.store.last_heard_at(ours.id) is None
    assert await harness.store.last_heard_at(theirs.id) == t0 + 1000
    await at(harness, 1800, t0, ours.id)
    await assert_expired(harness, ours.id, EXPIRY["en"])
    assert (await harness.get(theirs.id)).status is not S.TIMEOUT


async def test_a_flow_without_a_session_keeps_no_session_times(harness: Any) -> None:
    """No sessionTimeoutSeconds: nothing recorded, waits wake at their own due time."""
    await harness.publish(
        {"id": "plain", "start": "name", "nodes": [question("name"), {"id": "bye", "type": "end"}]}
    )
    ex = await harness.start("plain")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.meta == {} and ex.wake_at == ex.due_at


async def test_the_sweeper_restores_a_lost_wake_to_the_expiry(harness: Any) -> None:
    """A delay's wake time lost by hand: the sweeper puts it back at the session's
    expiry (before the delay's own due time), and the session ends on time."""
    await harness.publish(session({"id": "wait", "type": "delay", "seconds": 7200, "next": "bye"}))
    t0 = harness.clock.now()
    ex = await harness.start("s")
    await harness.settle()
    with sqlite3.connect(harness.store.path) as conn:
        conn.execute("UPDATE executions SET wake_at = NULL WHERE id = ?", (ex.id,))
    moved = await Sweeper(harness.store, harness.clock).sweep()
    assert [m.execution_id for m in moved] == [ex.id]
    assert (await harness.get(ex.id)).wake_at == t0 + 1800
    await at(harness, 1800, t0, ex.id)
    await assert_expired(harness, ex.id, EXPIRY["en"])
