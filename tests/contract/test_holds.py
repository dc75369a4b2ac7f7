"""Store contract: a person holds the conversation. The hold's commit takes the replies not
yet applied, later replies are held as they arrive (applied, forwarded to the desk, never
waking the execution); a person's message is queued once per messageId with its trail,
cancels the return deadline and fences out a worker; the desk gets the held messages one
at a time per execution, after the handoff notice; all of it survives a reopen."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from trilha.core.execution import Execution, Handoff
from trilha.core.states import ExecutionStatus
from trilha.errors import ExecutionNotFound, NotHeld, StaleLease
from trilha.store.base import AgentMessageResult, DeskMessage, Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus


async def _hold(
    store: Store, make: Make, *, due_at: float | None = T0 + 600, **fields: object
) -> Execution:
    """An execution whose first step handed it to a person (a 'wait' handoff)."""
    ex = await make.create(store, **fields)
    claimed = await make.claim(store, ex)
    commit = make.step(
        claimed.execution,
        status=S.PAUSED,
        node="to_desk",
        texts=("Connecting you to a person.",),
        waiting_for="human",
        due_at=due_at,
        wake_at=due_at,
    )
    commit.hold_inbox = True
    commit.handoffs = [
        Handoff(
            ex.id,
            ex.institution_id,
            ex.conversation_id,
            ex.contact_id,
            "support",
            "why",
            T0,
            "wait",
        )
    ]
    await store.commit_step(commit, now=T0)
    return await store.get_execution(ex.id)


async def _agent(
    store: Store, ex: Execution, message_id: str, text: str, now: float
) -> AgentMessageResult:
    return await store.record_agent_message(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        message_id=message_id,
        agent_id="ana",
        text=text,
        content=None,
        now=now,
    )


async def test_the_hold_takes_waiting_replies_and_holds_later_ones(
    store: Store, make: Make
) -> None:
    """Replies stored while the handoff ran are held by its commit; one arriving during
    the hold is held at once; none wakes the execution; each leaves a masked trail line."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await make.inbound(store, ex, "call me at +55 11 98765-4321", message_id="a", now=T0 + 1)
    commit = make.step(
        claimed.execution, status=S.PAUSED, node="to_desk", waiting_for="human", texts=()
    )
    commit.hold_inbox = True
    await store.commit_step(commit, now=T0 + 2)
    later = await make.inbound(store, ex, "hello?", message_id="b", now=T0 + 3)
    assert later.status == "accepted" and later.message.held_at == T0 + 3
    inbox = await store.inbox_for(ex.id)
    assert [(m.message_id, m.held_at, m.applied_at) for m in inbox] == [
        ("a", T0 + 2, T0 + 2),
        ("b", T0 + 3, T0 + 3),
    ]
    row = await store.get_execution(ex.id)
    assert row.status is S.PAUSED and row.waiting_for == "human" and row.wake_at is None
    assert await store.claim_due("w2", now=T0 + 10, lease_seconds=LEASE, limit=10) == []
    lines = [r for r in await store.logs(ex.id) if r.message == "message.held"]
    assert [r.context["messageId"] for r in lines] == ["a", "b"]
    assert "98765-4321" not in str(lines[0].context)  # the store's sink masks it
    duplicate = await make.inbound(store, ex, "hello?", message_id="b", now=T0 + 4)
    assert duplicate.status == "duplicate"
    assert len(await store.inbox_for(ex.id)) == 2


async def test_an_agent_message_is_queued_once_and_cancels_the_return(
    store: Store, make: Make
) -> None:
    """Accepted once per messageId (a repeat gives the first back); it is in the outbox with
    its agent, in the transcript after the bot's handoff message, clears the return
    deadline and bumps the fence so a worker claimed for the deadline cannot commit."""
    ex = await _hold(store, make)
    assert ex.due_at == ex.wake_at == T0 + 600
    worker = (await store.claim_due("w1", now=T0 + 601, lease_seconds=LEASE, limit=10))[0]
    first = await _agent(store, ex, "m-1", "Hi, Ana here.", T0 + 602)
    again = await _agent(store, ex, "m-1", "something else", T0 + 603)
    assert first.status == "accepted" and again.status == "duplicate"
    assert again.message == first.message
    message = first.message
    assert (message.agent_id, message.text, message.step_seq) == ("ana", "Hi, Ana here.", 1)
    assert message.idempotency_key.startswith(f"{ex.id}:1:agent-")
    row = await store.get_execution(ex.id)
    assert row.due_at is None and row.wake_at is None and row.lease_owner is None
    assert row.fencing_token > worker.execution.fencing_token
    returned = make.step(worker.execution, status=S.RUNNING, node="sorry", wake_at=T0 + 601)
    with pytest.raises(StaleLease):
        await store.commit_step(returned, now=T0 + 604)
    outbox = await store.outbox_for(ex.id)
    assert [(m.text, m.agent_id) for m in outbox] == [
        ("Connecting you to a person.", None),
        ("Hi, Ana here.", "ana"),
    ]
    transcript = [(t.sender, t.text, t.agent_id) for t in await store.transcript(ex.id)]
    assert transcript == [
        ("bot", "Connecting you to a person.", None),
        ("agent", "Hi, Ana here.", "ana"),
    ]
    trail = {r.message: r.context for r in await store.logs(ex.id)}
    assert trail["message.queued"]["agentId"] == "ana"
    assert trail["handoff.answered"] == {"agentId": "ana", "returnCancelled": True}
    deliveries = await store.deliveries(ex.id)
    assert [d.text for d in deliveries] == ["Connecting you to a person.", "Hi, Ana here."]


async def test_the_same_agent_message_twice_at_once_is_recorded_once(
    backend: Backend, make: Make
) -> None:
    """Two processes record one messageId at the same moment: one is accepted, the
    other answers it as a duplicate; one message goes out."""
    store, other = await backend.open(), await backend.open()
    ex = await _hold(store, make)
    results = await asyncio.gather(
        _agent(store, ex, "m-1", "Hi!", T0 + 1), _agent(other, ex, "m-1", "Hi!", T0 + 1)
    )
    assert sorted(r.status for r in results) == ["accepted", "duplicate"]
    assert results[0].message == results[1].message
    assert [m.text for m in await store.outbox_for(ex.id) if m.agent_id] == ["Hi!"]


async def test_held_and_agent_lines_interleave_by_time(store: Store, make: Make) -> None:
    """What the contact and the person said to each other reads in the order it was said."""
    ex = await _hold(store, make)
    await make.inbound(store, ex, "hello?", message_id="c1", now=T0 + 10)
    await _agent(store, ex, "m-1", "Hi!", T0 + 20)
    await make.inbound(store, ex, "my card", message_id="c2", now=T0 + 30)
    await _agent(store, ex, "m-2", "Done.", T0 + 40)
    transcript = [(t.sender, t.text) for t in await store.transcript(ex.id)]
    assert transcript == [
        ("bot", "Connecting you to a person."),
        ("contact", "hello?"),
        ("agent", "Hi!"),
        ("contact", "my card"),
        ("agent", "Done."),
    ]


async def test_agent_messages_only_while_a_person_holds_it(store: Store, make: Make) -> None:
    """Not held: NotHeld with the status; no execution, or another institution's: not
    found; a repeat of a message recorded during the hold still answers its result."""
    running = await make.create(store, conversation="busy")
    with pytest.raises(NotHeld) as refused:
        await _agent(store, running, "m-1", "hi", T0)
    assert refused.value.details["status"] == "running"
    ghost = make.execution(conversation="nobody")
    with pytest.raises(ExecutionNotFound):
        await _agent(store, ghost, "m-1", "hi", T0)
    ex = await _hold(store, make)
    first = await _agent(store, ex, "m-1", "hi", T0 + 1)
    other = dataclasses.replace(ex, institution_id="inst-2")
    with pytest.raises(ExecutionNotFound):
        await _agent(store, other, "m-2", "hi", T0 + 2)
    read = await store.get_execution(ex.id)
    read.status, read.waiting_for, read.current_node_id = S.RUNNING, None, "survey"
    await store.operator_write(
        read, expected_token=read.fencing_token, transitions=[], logs=[], now=T0 + 3
    )
    with pytest.raises(NotHeld):
        await _agent(store, ex, "m-3", "after the handback", T0 + 4)
    repeat = await _agent(store, ex, "m-1", "hi", T0 + 5)
    assert repeat.status == "duplicate" and repeat.message == first.message


async def _desk(store: Store, now: float) -> list[DeskMessage]:
    return await store.claim_desk_messages(now=now, lease_seconds=LEASE, limit=10)


async def test_the_desk_gets_held_messages_in_order_after_the_notice(
    store: Store, make: Make
) -> None:
    """Nothing before the handoff's notice went out; then each execution's oldest held
    message only, leased; a failure waits for its retry and holds the later ones back."""
    ex = await _hold(store, make, conversation="c-1")
    other = await _hold(store, make, conversation="c-2")
    for n, text in enumerate(("one", "two", "three")):
        await make.inbound(store, ex, text, message_id=f"x{n}", now=T0 + 1 + n)
    await make.inbound(store, other, "only", message_id="y", now=T0 + 5)
    assert await _desk(store, T0 + 10) == []
    notices = await store.claim_handoff_notices(now=T0 + 10, lease_seconds=LEASE, limit=10)
    assert [(h.execution_id, h.mode) for _, h in notices] == [(ex.id, "wait"), (other.id, "wait")]
    for handoff_id, _ in notices:
        await store.mark_handoff_notice(handoff_id, now=T0 + 10, error=None, retry_at=None)
    batch = await _desk(store, T0 + 10)
    assert [(d.message.execution_id, d.message.text) for d in batch] == [
        (ex.id, "one"),
        (other.id, "only"),
    ]
    assert await _desk(store, T0 + 10) == []  # leased
    one, only = batch
    await store.mark_desk_message(one.id, now=T0 + 11, error="503", retry_at=T0 + 20)
    await store.mark_desk_message(only.id, now=T0 + 11, error=None, retry_at=None)
    assert await _desk(store, T0 + 12) == []
    again = await _desk(store, T0 + 20)
    assert [(d.message.text, d.attempts) for d in again] == [("one", 1)]
    await store.mark_desk_message(again[0].id, now=T0 + 21, error=None, retry_at=None)
    rest = []
    for _ in range(3):
        got = await _desk(store, T0 + 22)
        for d in got:
            rest.append(d.message.text)
            await store.mark_desk_message(d.id, now=T0 + 22, error=None, retry_at=None)
    assert rest == ["two", "three"]
    handoffs = await store.handoffs(ex.id)
    assert [(h.queue, h.mode) for h in handoffs] == [("support", "wait")]


async def test_a_hold_survives_a_reopen(backend: Backend, make: Make) -> None:
    """Held state, its return deadline, held messages and the desk's queue are durable."""
    store = await backend.open()
    ex = await _hold(store, make)
    await make.inbound(store, ex, "hello?", message_id="h", now=T0 + 1)
    store = await backend.reopen(store)
    row = await store.get_execution(ex.id)
    assert (row.status, row.waiting_for, row.due_at, row.wake_at) == (
        S.PAUSED,
        "human",
        T0 + 600,
        T0 + 600,
    )
    notices = await store.claim_handoff_notices(now=T0 + 2, lease_seconds=LEASE, limit=10)
    await store.mark_handoff_notice(notices[0][0], now=T0 + 2, error=None, retry_at=None)
    (pending,) = await store.claim_desk_messages(now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert pending.message.text == "hello?" and pending.message.held_at == T0 + 1
    due = await store.claim_due("w9", now=T0 + 600, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in due] == [ex.id]
