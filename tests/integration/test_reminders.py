"""A question's reminders through the engine over a real SQLite store and a fake clock:
each said once at its time while no reply came, then the input timeout; durable across
a new worker (a restarted process) and a worker that died mid-reminder."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from trilha.config import Config, EngineConfig
from trilha.core.states import ExecutionStatus, Outcome, is_allowed
from trilha.observability.checker import check_execution

S = ExecutionStatus

ASK = {
    "id": "ask",
    "type": "question",
    "text": "Your CPF?",
    "variable": "cpf",
    "validate": {"kind": "regex", "pattern": "^[0-9]{11}$"},
    "invalidText": "Eleven digits, please.",
    "reminders": [
        {"afterSeconds": 600, "text": "Ainda está aí?"},
        {"afterSeconds": 1200, "text": "Last call, {{contact.name}}!"},
    ],
    "inputTimeoutSeconds": 1800,
    "onTimeout": "gave_up",
    "next": "thanks",
}


def reminding(ask: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    return {
        "id": "remind",
        "start": "ask",
        "settings": settings,
        "nodes": [
            ask or ASK,
            {"id": "thanks", "type": "end", "text": "Thanks."},
            {"id": "gave_up", "type": "end", "text": "We will write later."},
        ],
    }


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def history_is_consistent(h: Any, execution_id: str) -> None:
    history = await h.store.transitions(execution_id)
    for prev, cur in itertools.pairwise(history):
        assert cur.source is prev.target and is_allowed(cur.source, cur.target)
    assert history[-1].target is (await h.get(execution_id)).status


async def at(h: Any, seconds: float, start: float, execution_id: str) -> Any:
    """Move the clock to ``start + seconds`` and let the worker do what is due; what it
    left passes ``trilha check``."""
    h.clock.advance(start + seconds - h.clock.now())
    await h.settle()
    found = await check_execution(h.store, execution_id, now=h.clock.now(), grace=60.0)
    assert found is not None and [v for v in found if v.severity == "error"] == []
    return await h.get(execution_id)


async def test_each_reminder_once_at_its_time_then_on_timeout(harness: Any) -> None:
    """Reminders go out at 600 s and 1200 s, once each however often the worker looks,
    and the question's own inputTimeoutSeconds (1800 s, not the flow's) takes onTimeout."""
    await harness.publish(reminding(inputTimeoutSeconds=86_400))
    t0 = harness.clock.now()
    ex = await harness.start("remind", variables={"contact": {"name": "Ana"}})
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.WAITING_INPUT
    assert ex.due_at == t0 + 1800 and ex.wake_at == t0 + 600
    assert ex.node_state["remindAt"] == t0 + 600 and ex.node_state["reminded"] == 0

    ex = await at(harness, 599, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["Your CPF?"]
    ex = await at(harness, 600, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["Your CPF?", "Ainda está aí?"]
    assert ex.status is S.WAITING_INPUT and ex.due_at == t0 + 1800
    assert ex.wake_at == t0 + 1200 and ex.node_state["reminded"] == 1
    for second in (601, 900, 1199):  # looked at again and again: nothing more to say
        ex = await at(harness, second, t0, ex.id)
    assert len(await bot_texts(harness, ex.id)) == 2
    ex = await at(harness, 1200, t0, ex.id)
    assert ex.wake_at == t0 + 1800 and "remindAt" not in ex.node_state
    ex = await at(harness, 1799, t0, ex.id)
    assert ex.status is S.WAITING_INPUT
    ex = await at(harness, 1800, t0, ex.id)
    assert ex.status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == [
        "Your CPF?",
        "Ainda está aí?",
        "Last call, Ana!",
        "We will write later.",
    ]
    assert harness.channel.texts(ex.id) == await bot_texts(harness, ex.id)
    steps = [(c.node_id, c.output) for c in await harness.store.checkpoints(ex.id)]
    assert steps[1:3] == [
        ("ask", {"reminder": 1, "of": 2, "said": "Ainda está aí?"}),
        ("ask", {"reminder": 2, "of": 2, "said": "Last call, Ana!"}),
    ]
    reasons = [t.reason for t in await harness.store.transitions(ex.id)]
    assert reasons.count("a reminder is due at 'ask'") == 2
    await history_is_consistent(harness, ex.id)


async def test_a_reply_stops_the_reminders(harness: Any) -> None:
    """A valid reply after the first reminder moves on: no second reminder, no timeout."""
    await harness.publish(reminding())
    t0 = harness.clock.now()
    ex = await harness.start("remind")
    await harness.settle()
    await at(harness, 650, t0, ex.id)
    ex = await harness.reply(ex.id, "12345678901")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    await at(harness, 5000, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["Your CPF?", "Ainda está aí?", "Thanks."]


async def test_an_invalid_reply_starts_the_schedule_over(harness: Any) -> None:
    """A reply, even an invalid one, shows the contact is there: the re-ask's reminders
    and its input timeout count from that reply."""
    await harness.publish(reminding())
    t0 = harness.clock.now()
    ex = await harness.start("remind")
    await harness.settle()
    await at(harness, 600, t0, ex.id)
    harness.clock.advance(100)  # t0 + 700
    ex = await harness.reply(ex.id, "no")
    assert ex.status is S.WAITING_INPUT
    assert ex.node_state["reminded"] == 0 and ex.node_state["since"] == t0 + 700
    assert ex.due_at == t0 + 700 + 1800 and ex.wake_at == t0 + 700 + 600
    ex = await at(harness, 1299, t0, ex.id)
    assert await bot_texts(harness, ex.id) == [
        "Your CPF?",
        "Ainda está aí?",
        "Eleven digits, please.",
    ]
    ex = await at(harness, 1300, t0, ex.id)
    ex = await at(harness, 1900, t0, ex.id)
    ex = await at(harness, 2499, t0, ex.id)
    assert ex.status is S.WAITING_INPUT
    ex = await at(harness, 2500, t0, ex.id)
    assert ex.status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == [
        "Your CPF?",
        "Ainda está aí?",
        "Eleven digits, please.",
        "Ainda está aí?",
        "Last call, !",
        "We will write later.",
    ]


async def test_after_an_outage_only_the_latest_due_reminder_is_said(harness: Any) -> None:
    """Nobody ran while both reminders fell due: the contact gets one nudge (the latest),
    and the step names the one passed over."""
    await harness.publish(reminding())
    t0 = harness.clock.now()
    ex = await harness.start("remind")
    await harness.settle()
    ex = await at(harness, 1500, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["Your CPF?", "Last call, !"]
    last = (await harness.store.checkpoints(ex.id))[-1]
    assert last.output == {"reminder": 2, "of": 2, "said": "Last call, !", "skipped": [1]}
    assert ex.status is S.WAITING_INPUT and ex.wake_at == t0 + 1800


async def test_past_the_timeout_no_reminder_is_said(harness: Any) -> None:
    """An outage past the input timeout: the timeout takes over, no stale reminder."""
    await harness.publish(reminding())
    t0 = harness.clock.now()
    ex = await harness.start("remind")
    await harness.settle()
    ex = await at(harness, 4000, t0, ex.id)
    assert await bot_texts(harness, ex.id) == ["Your CPF?", "We will write later."]


async def test_a_new_process_neither_loses_nor_repeats_a_reminder(
    make_harness: Callable[..., Any],
) -> None:
    """A worker says the first reminder; another (a restarted process, with its own
    engine) says the second at its time and not the first again."""
    first = make_harness(worker_id="w1")
    await first.publish(reminding())
    t0 = first.clock.now()
    ex = await first.start("remind")
    await first.settle()
    await at(first, 600, t0, ex.id)
    second = make_harness(worker_id="w2")
    for second_at in (601, 1000, 1199, 1200, 1201, 1700):
        ex = await at(second, second_at, t0, ex.id)
    outbox = [m.text for m in await second.store.outbox_for(ex.id)]
    assert outbox == ["Your CPF?", "Ainda está aí?", "Last call, !"]
    assert ex.status is S.WAITING_INPUT and ex.node_state["reminded"] == 2


async def test_a_worker_dying_mid_reminder_leaves_it_to_the_next(
    make_harness: Callable[..., Any],
) -> None:
    """A worker claims the due reminder and dies before committing: nothing was said;
    once its lease expires another worker says it, once."""
    config = Config(engine=EngineConfig(lease_seconds=5))
    dying = make_harness(config, worker_id="w1")
    await dying.publish(reminding())
    t0 = dying.clock.now()
    ex = await dying.start("remind")
    await dying.settle()
    dying.clock.advance(600)
    (claimed,) = await dying.store.claim_due("w1", now=dying.clock.now(), lease_seconds=5, limit=1)
    assert claimed.execution.id == ex.id  # ...and the process is killed here
    assert [m.text for m in await dying.store.outbox_for(ex.id)] == ["Your CPF?"]
    taker = make_harness(config, worker_id="w2")
    ex = await at(taker, 606, t0, ex.id)
    ex = await at(taker, 700, t0, ex.id)
    assert [m.text for m in await taker.store.outbox_for(ex.id)] == [
        "Your CPF?",
        "Ainda está aí?",
    ]
    assert ex.node_state["reminded"] == 1 and ex.wake_at == t0 + 1200


async def test_a_reminder_speaks_the_contacts_language_with_buttons(harness: Any) -> None:
    """A reminder's text may be a map of languages (the contact's is said) and carry
    buttons like any message; its buttons do not change what the question accepts."""
    ask = {
        "id": "ask",
        "type": "question",
        "text": {"pt-BR": "Confirma?", "en": "Confirm?"},
        "variable": "ok",
        "buttons": [{"id": "yes", "title": {"pt-BR": "Sim", "en": "Yes"}}],
        "validate": {"kind": "choice"},
        "reminders": [
            {
                "afterSeconds": 60,
                "text": {"pt-BR": "Ainda está aí?", "en": "Still there?"},
                "buttons": [{"id": "yes", "title": {"pt-BR": "Sim", "en": "Yes"}}],
            }
        ],
        "next": "thanks",
    }
    await harness.publish(reminding(ask))
    t0 = harness.clock.now()
    ex = await harness.start("remind", variables={"contact": {"language": "en"}})
    await harness.settle()
    ex = await at(harness, 60, t0, ex.id)
    reminder = (await harness.store.outbox_for(ex.id))[-1]
    assert reminder.text.startswith("Still there?")
    assert reminder.content is not None
    assert reminder.content["buttons"] == [{"id": "yes", "title": "Yes"}]
    assert ex.node_state["options"] == [{"id": "yes", "title": "Yes"}]
    ex = await harness.reply(ex.id, "Yes")
    assert ex.status is S.COMPLETED and ex.variables["ok"] == "yes"


async def test_a_question_without_reminders_keeps_its_state(harness: Any) -> None:
    """No reminders, no schedule: the node state and the wake are as before."""
    ask = {k: v for k, v in ASK.items() if k not in ("reminders", "inputTimeoutSeconds")}
    await harness.publish(reminding(ask, inputTimeoutSeconds=300))
    t0 = harness.clock.now()
    ex = await harness.start("remind")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.node_state == {"asked": True, "invalid": 0}
    assert ex.due_at == ex.wake_at == t0 + 300
