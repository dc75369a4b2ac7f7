"""Store contract: signals are stored once per signalId and execution, wake only an
execution waiting for their event, come out oldest first and are consumed by the commit
of the step that takes them."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus
from trilha.errors import ExecutionEnded, ExecutionNotFound, LimitExceeded, StaleLease
from trilha.store.base import SignalResult, Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus

#: how long the wait_event nodes of these tests wait
WAIT = 3600.0
PAID = "event:payment.confirmed"


async def signal(
    store: Store,
    ex: Execution,
    signal_id: str,
    *,
    event: str = "payment.confirmed",
    payload: Any = None,
    now: float = T0,
    institution: str | None = None,
    max_pending: int = 100,
) -> SignalResult:
    return await store.deliver_signal(
        execution_id=ex.id,
        institution_id=ex.institution_id if institution is None else institution,
        event=event,
        signal_id=signal_id,
        payload=payload,
        now=now,
        max_pending=max_pending,
    )


async def waiting_for_event(store: Store, make: Make, **fields: Any) -> Execution:
    """An execution waiting for ``payment.confirmed`` (due in an hour), as the engine leaves it."""
    fields.setdefault("wake_at", T0 + WAIT)
    return await make.create(
        store,
        status=S.WAITING_INPUT,
        waiting_for=PAID,
        due_at=T0 + WAIT,
        node="wait",
        **fields,
    )


async def test_deliver_stores_and_acknowledges(store: Store, make: Make) -> None:
    """deliver_signal returns the stored signal, pending, with a signal.received trail line."""
    ex = await waiting_for_event(store, make)
    payload = {"amount": 1050, "ids": [1, 2], "note": "pago ✓", "none": None}
    result = await signal(store, ex, "pay-1", payload=payload, now=T0 + 3)
    assert result.status == "accepted"
    got = result.signal
    assert isinstance(got.id, int)
    assert (got.execution_id, got.institution_id, got.event, got.signal_id) == (
        ex.id,
        ex.institution_id,
        "payment.confirmed",
        "pay-1",
    )
    assert (got.payload, got.received_at, got.consumed_at, got.consumed_step) == (
        payload,
        T0 + 3,
        None,
        None,
    )
    assert await store.signals_for(ex.id) == [got]
    assert await store.pending_signal(ex.id, "payment.confirmed") == got
    (line,) = [r for r in await store.logs(ex.id) if r.message == "signal.received"]
    assert (line.level, line.at, line.node_id) == ("INFO", T0 + 3, "wait")
    assert line.context["event"] == "payment.confirmed" and line.context["signalId"] == "pay-1"
    assert line.context["payloadBytes"] > 0
    # not part of what the contact and the bot said
    assert await store.transcript(ex.id) == []


@pytest.mark.parametrize(
    "payload", [None, 0, -(2**63), 2**63 - 1, 1.5, "texto", [], {}, [{"a": [None, True]}]]
)
async def test_payloads_come_back_as_sent(store: Store, make: Make, payload: Any) -> None:
    """Any JSON value is a payload, read back unchanged."""
    ex = await waiting_for_event(store, make)
    await signal(store, ex, "s", payload=payload)
    (stored,) = await store.signals_for(ex.id)
    assert stored.payload == payload and type(stored.payload) is type(payload)


async def test_repeated_signal_id_answers_the_first(store: Store, make: Make) -> None:
    """A repeated signalId (another event, another payload) answers the first signal and
    stores nothing; the same id on another execution is a signal of its own."""
    ex = await waiting_for_event(store, make)
    other = await waiting_for_event(store, make)
    first = await signal(store, ex, "s-1", payload={"n": 1})
    again = await signal(store, ex, "s-1", event="refund", payload={"n": 2}, now=T0 + 9)
    assert again == SignalResult("duplicate", first.signal)
    elsewhere = await signal(store, other, "s-1", payload={"n": 3})
    assert elsewhere.status == "accepted" and elsewhere.signal.execution_id == other.id
    assert [s.payload for s in await store.signals_for(ex.id)] == [{"n": 1}]
    received = [r for r in await store.logs(ex.id) if r.message == "signal.received"]
    assert len(received) == 1


async def test_concurrent_repeats_store_one_signal(store: Store, make: Make) -> None:
    """The same signal sent many times at once is accepted exactly once."""
    ex = await waiting_for_event(store, make)
    results = await asyncio.gather(*(signal(store, ex, "s-1", payload=n) for n in range(12)))
    assert sorted(r.status for r in results) == ["accepted"] + ["duplicate"] * 11
    assert len({r.signal for r in results}) == 1
    assert len(await store.signals_for(ex.id)) == 1


async def test_unknown_and_foreign_executions_are_not_found(store: Store, make: Make) -> None:
    """An unknown execution, or another institution's (even for a signalId it holds), is
    not found, and nothing is stored; institution None (an operator) reaches any."""
    ex = await waiting_for_event(store, make, institution="acme")
    await signal(store, ex, "s-1")
    ghost = make.execution(id="ghost")
    with pytest.raises(ExecutionNotFound):
        await signal(store, ghost, "s-2")
    with pytest.raises(ExecutionNotFound):
        await signal(store, ex, "s-1", institution="beta")
    with pytest.raises(ExecutionNotFound):
        await signal(store, ex, "s-3", institution="beta")
    any_owner = await store.deliver_signal(
        execution_id=ex.id,
        institution_id=None,
        event="payment.confirmed",
        signal_id="s-4",
        payload=None,
        now=T0,
        max_pending=100,
    )
    assert any_owner.status == "accepted" and any_owner.signal.institution_id == "acme"
    assert [s.signal_id for s in await store.signals_for(ex.id)] == ["s-1", "s-4"]


async def test_an_ended_execution_takes_no_new_signal(store: Store, make: Make) -> None:
    """A new signal to an ended execution is refused with its state; a repeat of one it
    received is still answered."""
    ex = await waiting_for_event(store, make)
    await signal(store, ex, "s-1")
    claimed = await make.claim(store, ex, now=T0 + 1)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0 + 2)
    with pytest.raises(ExecutionEnded, match="completed; it takes no more signals") as caught:
        await signal(store, ex, "s-2")
    assert caught.value.details["status"] is S.COMPLETED
    assert (await signal(store, ex, "s-1")).status == "duplicate"
    assert len(await store.signals_for(ex.id)) == 1


async def test_pending_signals_are_bounded(store: Store, make: Make) -> None:
    """One signal over max_pending (not consumed yet) is refused; consumed ones do not count."""
    ex = await waiting_for_event(store, make)
    first = await signal(store, ex, "a", max_pending=2)
    await signal(store, ex, "b", event="other", max_pending=2)
    with pytest.raises(LimitExceeded, match="2 signals not consumed yet") as caught:
        await signal(store, ex, "c", max_pending=2)
    assert caught.value.details["kind"] == "limit"
    claimed = await make.claim(store, ex, now=T0 + 1)
    commit = make.step(claimed.execution, status=S.RUNNING, node="thanks", release=False)
    commit.applied_signals.append((first.signal.id, commit.execution.step_seq))
    await store.commit_step(commit, now=T0 + 2)
    assert (await signal(store, ex, "c", max_pending=2)).status == "accepted"


async def test_a_signal_wakes_only_what_waits_for_its_event(store: Store, make: Make) -> None:
    """Its event's wait is due now; another event's, a question's or a timer's is not."""
    paid = await waiting_for_event(store, make)
    other = await make.create(
        store, status=S.WAITING_INPUT, waiting_for="event:refund", wake_at=T0 + WAIT
    )
    question = await make.create(store, status=S.WAITING_INPUT, wake_at=T0 + WAIT)
    timer = await make.create(store, status=S.WAITING_DELAY, waiting_for="timer", wake_at=T0 + 60)
    for ex in (paid, other, question, timer):
        await signal(store, ex, "s", now=T0 + 5)
    claims = await store.claim_due("w1", now=T0 + 5, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [paid.id]
    assert claims[0].inbound is None


async def test_pending_signal_is_the_oldest_of_its_event(store: Store, make: Make) -> None:
    """Oldest first per event, leaving out consumed ones and the ids skipped."""
    ex = await waiting_for_event(store, make)
    a = (await signal(store, ex, "a", now=T0 + 1)).signal
    await signal(store, ex, "x", event="other", now=T0 + 2)
    b = (await signal(store, ex, "b", now=T0 + 3)).signal
    assert await store.pending_signal(ex.id, "payment.confirmed") == a
    assert await store.pending_signal(ex.id, "payment.confirmed", skip=[a.id]) == b
    assert await store.pending_signal(ex.id, "payment.confirmed", skip=[a.id, b.id]) is None
    assert await store.pending_signal(ex.id, "nothing") is None
    assert await store.pending_signal("ghost", "payment.confirmed") is None


async def test_commit_marks_the_signal_consumed(store: Store, make: Make) -> None:
    """The step commit that takes a signal marks it consumed with its step; it is no
    longer pending, and a repeat of its id is answered with it consumed."""
    ex = await waiting_for_event(store, make)
    sent = (await signal(store, ex, "s-1", payload={"ok": True}, now=T0 + 1)).signal
    claimed = await make.claim(store, ex, now=T0 + 1)
    commit = make.step(claimed.execution, status=S.COMPLETED, node="thanks")
    seq = commit.execution.step_seq
    commit.applied_signals.append((sent.id, seq))
    await store.commit_step(commit, now=T0 + 2)
    consumed = dataclasses.replace(sent, consumed_at=T0 + 2, consumed_step=seq)
    assert await store.signals_for(ex.id) == [consumed]
    assert await store.pending_signal(ex.id, "payment.confirmed") is None
    assert (await signal(store, ex, "s-1")).signal == consumed


async def test_a_refused_commit_consumes_nothing(store: Store, make: Make) -> None:
    """A commit under a stale fencing token leaves the signal pending (atomic with the step)."""
    ex = await waiting_for_event(store, make)
    sent = (await signal(store, ex, "s-1", now=T0 + 1)).signal
    stale = await make.claim(store, ex, now=T0 + 1, worker="w1")
    await make.claim(store, ex, now=T0 + 1 + LEASE + 1, worker="w2")
    commit = make.step(stale.execution, status=S.COMPLETED)
    commit.applied_signals.append((sent.id, commit.execution.step_seq))
    with pytest.raises(StaleLease):
        await store.commit_step(commit, now=T0 + LEASE + 3)
    assert (await store.signals_for(ex.id)) == [sent]


async def test_a_signal_during_the_step_wakes_it_at_commit(store: Store, make: Make) -> None:
    """A signal stored while the execution runs wakes it as soon as a commit leaves it
    waiting for that event; a reply or another event's signal does not (the replies wait
    for a question: no busy loop)."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await make.inbound(store, ex, "oi?", now=T0 + 1)
    await signal(store, ex, "x", event="refund", now=T0 + 1)
    waits = make.step(
        claimed.execution,
        status=S.WAITING_INPUT,
        waiting_for=PAID,
        node="wait",
        wake_at=T0 + 2 + WAIT,
        due_at=T0 + 2 + WAIT,
        release=False,
    )
    await store.commit_step(waits, now=T0 + 2)
    assert (await store.get_execution(ex.id)).wake_at == T0 + 2 + WAIT  # not woken
    await signal(store, ex, "s", now=T0 + 3)  # held by the worker: not woken by this
    again = make.step(
        waits.execution,
        status=S.WAITING_INPUT,
        waiting_for=PAID,
        node="wait",
        texts=[],
        wake_at=T0 + 2 + WAIT,
        due_at=T0 + 2 + WAIT,
    )
    await store.commit_step(again, now=T0 + 4)
    assert (await store.get_execution(ex.id)).wake_at == T0 + 4
    claims = await store.claim_due("w1", now=T0 + 4, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [ex.id]


async def test_resume_into_an_event_wait_wakes_for_a_signal(store: Store, make: Make) -> None:
    """An operator's write that returns an execution to its event wait makes it due now
    when a signal of the event came meanwhile (sent while paused)."""
    ex = await waiting_for_event(store, make)
    stored = await store.get_execution(ex.id)
    await signal(store, ex, "s", now=T0 + 1)
    resumed = dataclasses.replace(
        stored,
        variables=dict(stored.variables),
        node_state=dict(stored.node_state),
        start_variables=dict(stored.start_variables),
    )
    written = await store.operator_write(
        resumed, expected_token=stored.fencing_token, transitions=[], logs=[], now=T0 + 2
    )
    assert written.wake_at == T0 + 2
    assert (await store.get_execution(ex.id)).wake_at == T0 + 2


async def test_signals_survive_a_reopen(backend: Backend, make: Make) -> None:
    """Signals, pending and consumed, are on disk: a new process reads them back."""
    store = await backend.open()
    ex = await waiting_for_event(store, make)
    first = (await signal(store, ex, "a", payload=[1])).signal
    claimed = await make.claim(store, ex, now=T0 + 1)
    commit = make.step(
        claimed.execution, status=S.WAITING_INPUT, waiting_for=PAID, wake_at=T0 + WAIT
    )
    commit.applied_signals.append((first.id, commit.execution.step_seq))
    await store.commit_step(commit, now=T0 + 2)
    second = (await signal(store, ex, "b", payload=[2], now=T0 + 3)).signal
    store = await backend.reopen(store)
    assert [(s.signal_id, s.pending) for s in await store.signals_for(ex.id)] == [
        ("a", False),
        ("b", True),
    ]
    assert await store.pending_signal(ex.id, "payment.confirmed") == second
    assert (await signal(store, ex, "a")).status == "duplicate"
