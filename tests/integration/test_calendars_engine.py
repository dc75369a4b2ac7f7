"""Business hours through the engine over a real SQLite store and a fake clock:
``wait_until_open`` across a weekend (and a change of clocks), ``is_open``/``next_open``
in conditions and texts, calendars from trilha.toml and the store, one read per turn and
none for a flow without calendars, and one institution's calendars invisible to another."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from trilha.channels.memory import MemoryChannel
from trilha.config import CalendarConfig, Config
from trilha.core.calendars import DAYS
from trilha.core.flow import load_flow
from trilha.core.states import ExecutionStatus
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.processors.registry import Processors

S = ExecutionStatus

CLINIC: dict[str, Any] = {
    "timeZone": "America/Sao_Paulo",
    "hours": {day: [["08:00", "12:00"], ["13:00", "18:00"]] for day in DAYS[:5]},
    "holidays": ["2027-01-25"],  # a Monday
}
#: Friday 2027-01-15, 19:00 in São Paulo: closed for the weekend
FRIDAY_EVENING = datetime(2027, 1, 15, 22, 0, tzinfo=UTC).timestamp()
#: when the clinic opens after it: Monday 08:00 (-03:00)
MONDAY_OPENING = datetime(2027, 1, 18, 11, 0, tzinfo=UTC).timestamp()


def flow(flow_id: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": list(nodes)}


WAITING = flow(
    "after-hours",
    {"id": "hi", "type": "message", "text": "Hi! We answer in business hours.", "next": "wait"},
    {
        "id": "wait",
        "type": "wait_until_open",
        "calendar": "clinic",
        "fallback": {"next": "no-calendar"},
        "next": "open",
    },
    {"id": "open", "type": "end", "text": "We are open: how can we help?"},
    {"id": "no-calendar", "type": "end", "text": "Sorry, we could not check our hours."},
)


async def move_clock(h: Any, to: float) -> None:
    h.clock.advance(to - h.clock.now())
    await h.settle()


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def put(h: Any, name: str, definition: dict[str, Any], institution: str = "inst-1") -> None:
    await h.store.put_calendar(institution, name, definition, now=h.clock.now(), limit=100)


async def test_wait_until_open_across_a_weekend(harness: Any) -> None:
    """Closed on Friday evening: the execution waits in the store (waiting_delay, a timer due
    at Monday 08:00), sleeps through the weekend, and moves on when the clinic opens."""
    h = harness
    await put(h, "clinic", CLINIC)
    await h.publish(WAITING)
    await move_clock(h, FRIDAY_EVENING)
    ex = await h.start("after-hours")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.WAITING_DELAY and ex.waiting_for == "timer"
    assert ex.due_at == MONDAY_OPENING and ex.wake_at == MONDAY_OPENING
    assert ex.node_state == {"dueAt": MONDAY_OPENING, "opensAt": "2027-01-18T08:00:00-03:00"}
    step = (await h.store.checkpoints(ex.id))[-1]
    assert step.node_id == "wait"
    assert step.output == {
        "calendar": "clinic",
        "open": False,
        "opensAt": "2027-01-18T08:00:00-03:00",
    }

    await move_clock(h, MONDAY_OPENING - 1)  # Saturday, Sunday, Monday 07:59:59
    assert (await h.get(ex.id)).status is S.WAITING_DELAY
    assert await bot_texts(h, ex.id) == ["Hi! We answer in business hours."]

    await move_clock(h, MONDAY_OPENING)
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert await bot_texts(h, ex.id) == [
        "Hi! We answer in business hours.",
        "We are open: how can we help?",
    ]
    assert (await h.store.checkpoints(ex.id))[-2].output == {
        "calendar": "clinic",
        "open": True,
        "waitedUntil": "2027-01-18T08:00:00-03:00",
    }
    assert [t.target for t in await h.store.transitions(ex.id)] == [
        S.RUNNING,
        S.WAITING_DELAY,
        S.RUNNING,
        S.COMPLETED,
    ]


async def test_open_already_moves_on_at_once(harness: Any) -> None:
    h = harness
    await put(h, "clinic", CLINIC)
    await h.publish(WAITING)
    await move_clock(h, MONDAY_OPENING + 3600)
    ex = await h.start("after-hours")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert S.WAITING_DELAY not in [t.target for t in await h.store.transitions(ex.id)]
    assert (await h.store.checkpoints(ex.id))[1].output == {"calendar": "clinic", "open": True}


async def test_waiting_across_a_change_of_clocks(harness: Any) -> None:
    """New York springs forward on Sunday 2027-03-14: waiting from Friday 18:00 EST, the
    store opens on Monday at 09:00 EDT, 13:00 UTC (not 14:00, as the old offset would say)."""
    h = harness
    await put(h, "clinic", {"timeZone": "America/New_York", "hours": {"mon": [["09:00", "17:00"]]}})
    await h.publish(WAITING)
    await move_clock(h, datetime(2027, 3, 12, 23, 0, tzinfo=UTC).timestamp())
    ex = await h.start("after-hours")
    await h.settle()
    monday = datetime(2027, 3, 15, 13, 0, tzinfo=UTC).timestamp()
    assert (await h.get(ex.id)).due_at == monday
    await move_clock(h, monday)
    assert (await h.get(ex.id)).status is S.COMPLETED


async def test_the_calendar_is_asked_again_when_the_timer_fires(harness: Any) -> None:
    """Hours changed while waiting (Monday made a holiday): at Monday 08:00 the execution
    sees it is closed and waits on until Tuesday, rather than answering on a holiday."""
    h = harness
    await put(h, "clinic", CLINIC)
    await h.publish(WAITING)
    await move_clock(h, FRIDAY_EVENING)
    ex = await h.start("after-hours")
    await h.settle()
    await put(h, "clinic", CLINIC | {"holidays": ["2027-01-18"]})
    await move_clock(h, MONDAY_OPENING)
    ex = await h.get(ex.id)
    tuesday = MONDAY_OPENING + 86_400
    assert ex.status is S.WAITING_DELAY and ex.due_at == tuesday
    await move_clock(h, tuesday)
    assert (await h.get(ex.id)).status is S.COMPLETED


async def test_a_missing_calendar_takes_the_fallback(harness: Any) -> None:
    """No calendar of that name for the institution: the node fails once (kind
    configuration: never retried) with a message naming it, and its fallback is taken."""
    h = harness
    await h.publish(WAITING)
    ex = await h.start("after-hours")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert (await bot_texts(h, ex.id))[-1] == "Sorry, we could not check our hours."
    failed = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert len(failed) == 1 and failed[0].node_id == "wait"
    assert failed[0].error["kind"] == "configuration"
    assert (
        failed[0]
        .error["message"]
        .startswith(
            "no calendar 'clinic' for institution 'inst-1': define it with PUT /v1/calendars/clinic"
        )
    )


async def test_a_calendar_that_never_opens_takes_the_fallback(harness: Any) -> None:
    h = harness
    await put(h, "clinic", {"timeZone": "UTC"})
    await h.publish(WAITING)
    ex = await h.start("after-hours")
    await h.settle()
    failed = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert failed[0].error["message"] == "calendar 'clinic' does not open in the next 366 days"
    assert (await bot_texts(h, ex.id))[-1] == "Sorry, we could not check our hours."


BRANCHING = flow(
    "hours",
    {
        "id": "route",
        "type": "condition",
        "branches": [{"when": "is_open('clinic')", "next": "open"}],
        "default": "closed",
    },
    {"id": "open", "type": "end", "text": "A person will answer you now."},
    {
        "id": "closed",
        "type": "end",
        "text": "We are closed. We open {{format_date(next_open('clinic'), 'EEEE HH:mm')}}.",
    },
)


@pytest.mark.parametrize(
    ("at", "said"),
    [
        (MONDAY_OPENING + 60, "A person will answer you now."),
        (FRIDAY_EVENING, "We are closed. We open Monday 08:00."),
        # Friday the 22nd, 19:00: the next Monday is a holiday
        (FRIDAY_EVENING + 7 * 86_400, "We are closed. We open Tuesday 08:00."),
    ],
)
async def test_is_open_in_a_condition_and_next_open_in_a_text(
    harness: Any, at: float, said: str
) -> None:
    h = harness
    await put(h, "clinic", CLINIC)
    await h.publish(BRANCHING)
    await move_clock(h, at)
    ex = await h.start("hours")
    await h.settle()
    assert await bot_texts(h, ex.id) == [said]


async def test_an_unknown_calendar_in_a_condition_fails_the_node(harness: Any) -> None:
    """is_open of a calendar the institution has none of is an error naming it."""
    h = harness
    await h.publish(BRANCHING)
    ex = await h.start("hours")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.FAILED
    failed = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert failed[0].error["message"] == "is_open(): unknown calendar 'clinic' at column 1"


async def test_one_institution_never_reads_anothers_calendar(harness: Any) -> None:
    """inst-1's calendar is unknown to inst-2's execution of the same (shared) flow."""
    h = harness
    await put(h, "clinic", CLINIC, institution="inst-1")
    await h.publish(WAITING)
    await move_clock(h, FRIDAY_EVENING)
    own = await h.start("after-hours", conversation="c-1", institution_id="inst-1")
    other = await h.start("after-hours", conversation="c-2", institution_id="inst-2")
    await h.settle()
    assert (await h.get(own.id)).status is S.WAITING_DELAY
    assert (await bot_texts(h, other.id))[-1] == "Sorry, we could not check our hours."
    failed = [c for c in await h.store.checkpoints(other.id) if c.error is not None]
    assert "no calendar 'clinic' for institution 'inst-2'" in failed[0].error["message"]


async def test_calendars_of_the_configuration(make_harness: Any) -> None:
    """trilha.toml's calendars serve the institutions they name (or all); an institution's
    own calendar of the same name takes their place for it."""
    weekends = {"timeZone": "America/Sao_Paulo", "hours": {"sat": [["09:00", "13:00"]]}}
    config = Config(
        calendars={
            "clinic": CalendarConfig.model_validate(
                weekends | {"institutions": ["inst-1", "inst-3"]}
            ),
            "lab": CalendarConfig.model_validate(CLINIC),
        }
    )
    h = make_harness(config)
    await put(h, "clinic", CLINIC, institution="inst-3")
    await h.publish(BRANCHING)
    await h.publish(
        flow(
            "lab",
            {
                "id": "m",
                "type": "end",
                "text": "{{next_open('lab')}}",
            },
        )
    )
    saturday_10 = datetime(2027, 1, 16, 13, 0, tzinfo=UTC).timestamp()
    await move_clock(h, saturday_10)
    by_config = await h.start("hours", conversation="c-1", institution_id="inst-1")
    overridden = await h.start("hours", conversation="c-3", institution_id="inst-3")
    not_served = await h.start("hours", conversation="c-2", institution_id="inst-2")
    every = await h.start("lab", conversation="c-4", institution_id="inst-2")
    await h.settle()
    assert await bot_texts(h, by_config.id) == ["A person will answer you now."]
    assert await bot_texts(h, overridden.id) == ["We are closed. We open Monday 08:00."]
    assert (await h.get(not_served.id)).status is S.FAILED
    assert await bot_texts(h, every.id) == ["2027-01-18T08:00:00-03:00"]


class CountingStore:
    """The real store, counting the calendar reads that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calendar_reads: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_calendars(self, institution_id: str, names: Any = None) -> Any:
        self.calendar_reads.append((institution_id, names))
        return await self.inner.list_calendars(institution_id, names)


async def test_calendars_are_read_once_a_turn_and_only_when_named(
    sqlite_store: Any, clock: Any
) -> None:
    """A turn reads the institution's calendars once, only those the flow names, however
    many of its steps ask; a flow that names none never reads them."""
    store = CountingStore(sqlite_store)
    engine = Engine(store, processors=Processors.from_entry_points(), clock=clock)
    worker = Worker(engine, Dispatcher(sqlite_store, MemoryChannel(), clock=clock))
    for name in ("clinic", "lab"):
        await sqlite_store.put_calendar("inst-1", name, CLINIC, now=clock.now(), limit=10)
    many = flow(
        "many",
        {
            "id": "route",
            "type": "condition",
            "branches": [{"when": "is_open('clinic')", "next": "say"}],
        },
        {"id": "say", "type": "message", "text": "{{next_open('clinic')}}", "next": "wait"},
        {"id": "wait", "type": "wait_until_open", "calendar": "clinic", "next": "bye"},
        {"id": "bye", "type": "end", "text": "{{is_open('clinic')}}"},
    )
    for definition in (many, flow("plain", {"id": "m", "type": "end", "text": "hi"})):
        await engine.publish(load_flow(definition, engine.processors.node_types))
    clock.advance(MONDAY_OPENING + 60 - clock.now())
    for flow_id in ("many", "plain"):
        await engine.start(
            flow_id, institution_id="inst-1", conversation_id=flow_id, contact_id="x"
        )
    await worker.run_until_idle()
    assert store.calendar_reads == [("inst-1", ["clinic"])]
    executions = await sqlite_store.list_executions()
    assert {ex.status for ex in executions} == {S.COMPLETED}
