"""Store contract for triggers and bursts: an institution's trigger set (replaced whole,
read back, forgotten, per institution), a trigger's start with its message in one
transaction (a duplicate starts nothing, a busy conversation is refused or replaced), the
unapplied messages of an execution, and snoozing a held execution past a burst's window."""

from __future__ import annotations

import asyncio

import pytest

from trilha.core.execution import InboundMessage
from trilha.core.states import ExecutionStatus, Outcome
from trilha.errors import ConversationBusy, StaleLease
from trilha.store.base import Store

from .conftest import LEASE, T0, Make

S = ExecutionStatus

TRIGGERS = [
    {"keywords": ["oi", "menu", "atenção ✓"], "flowId": "clinic"},
    {"default": True, "flowId": "welcome"},
]


# ------------------------------------------------------------------------------- trigger sets


async def test_triggers_are_replaced_whole_and_read_back(store: Store) -> None:
    """put replaces the whole list (order and Unicode kept); get reads it; none: None."""
    assert await store.get_triggers("acme") is None
    stored = await store.put_triggers("acme", TRIGGERS, now=T0, actor="key:k1")
    assert (stored.institution_id, stored.triggers, stored.updated_at) == ("acme", TRIGGERS, T0)
    got = await store.get_triggers("acme")
    assert got is not None
    assert (got.triggers, got.updated_at, got.updated_by) == (TRIGGERS, T0, "key:k1")
    await store.put_triggers("acme", [], now=T0 + 5, actor="key:k2")
    emptied = await store.get_triggers("acme")
    assert emptied is not None and emptied.triggers == [] and emptied.updated_by == "key:k2"


async def test_triggers_are_per_institution(store: Store) -> None:
    """One institution's set is not another's; deleting one leaves the other."""
    await store.put_triggers("acme", TRIGGERS, now=T0, actor="a")
    await store.put_triggers("beta", TRIGGERS[:1], now=T0, actor="b")
    acme, beta = await store.get_triggers("acme"), await store.get_triggers("beta")
    assert acme is not None and beta is not None
    assert len(acme.triggers) == 2 and len(beta.triggers) == 1
    assert await store.delete_triggers("beta") is True
    assert await store.delete_triggers("beta") is False
    assert await store.get_triggers("beta") is None
    assert await store.get_triggers("acme") is not None


async def test_triggers_survive_a_restart(backend: object, store: Store) -> None:
    """What put stored is there for another connection (another process)."""
    await store.put_triggers("acme", TRIGGERS, now=T0, actor="a")
    other = await backend.open()  # type: ignore[attr-defined]
    got = await other.get_triggers("acme")
    assert got is not None and got.triggers == TRIGGERS


# ---------------------------------------------------------------------- a trigger's start


def trigger_message(
    ex_conversation: str, message_id: str = "wamid-1", **fields: object
) -> InboundMessage:
    values: dict[str, object] = {
        "id": 0,
        "institution_id": "inst-1",
        "conversation_id": ex_conversation,
        "message_id": message_id,
        "contact_id": "contact-9",
        "text": "oi",
        "received_at": T0,
        "payload": {"raw": 1},
        "content": None,
    }
    values.update(fields)
    return InboundMessage(**values)  # type: ignore[arg-type]


async def test_a_triggered_start_stores_its_message_applied(store: Store, make: Make) -> None:
    """The execution and its message land together; the message is applied (no claim hands
    it out as a reply) and opens the transcript."""
    ex = make.execution(conversation="conv-t", variables={})
    logs = [make.log(ex), make.log(ex, "execution.triggered", trigger={"flowId": "x"})]
    content = {"type": "button", "replyId": "b1", "text": "Oi"}
    result = await store.create_triggered(
        ex, make.started(ex), logs, trigger_message("conv-t", content=content)
    )
    assert result.status == "accepted"
    msg = result.message
    assert (msg.execution_id, msg.applied_at, msg.message_id) == (ex.id, T0, "wamid-1")
    assert msg.content == content and msg.payload == {"raw": 1}
    assert (await store.get_execution(ex.id)).status is S.RUNNING
    [claimed] = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert claimed.execution.id == ex.id and claimed.inbound is None
    assert await store.pending_inbound(ex.id, limit=10) == []
    assert [(e.sender, e.text) for e in await store.transcript(ex.id)] == [("contact", "oi")]
    assert [r.message for r in await store.logs(ex.id)] == [
        "execution.started",
        "execution.triggered",
    ]


async def test_the_same_message_starts_nothing_twice(store: Store, make: Make) -> None:
    """A stored message_id is a duplicate: the first execution is named, nothing created."""
    first = make.execution(conversation="conv-t")
    await store.create_triggered(first, make.started(first), [], trigger_message("conv-t"))
    second = make.execution(conversation="conv-t")
    again = await store.create_triggered(
        second, make.started(second), [], trigger_message("conv-t", text="oi (again)")
    )
    assert again.status == "duplicate"
    assert again.message.execution_id == first.id and again.message.text == "oi"
    assert [e.id for e in await store.list_executions()] == [first.id]


async def test_two_deliveries_of_one_message_at_once_start_one(store: Store, make: Make) -> None:
    """Concurrent starts for the same message: one accepted, the other its duplicate."""
    made = [make.execution(conversation="conv-r") for _ in range(2)]
    results = await asyncio.gather(
        *(
            store.create_triggered(ex, make.started(ex), [], trigger_message("conv-r"))
            for ex in made
        ),
        return_exceptions=True,
    )
    statuses = sorted(r.status for r in results if not isinstance(r, BaseException))
    assert statuses == ["accepted", "duplicate"], results
    assert len(await store.list_executions()) == 1


async def test_a_busy_conversation_refuses_a_start_and_keeps_nothing(
    store: Store, make: Make
) -> None:
    """An active execution refuses the start (naming it); the message is not stored."""
    running = await make.create(store, conversation="conv-b")
    ex = make.execution(conversation="conv-b")
    with pytest.raises(ConversationBusy) as caught:
        await store.create_triggered(ex, make.started(ex), [], trigger_message("conv-b", "m9"))
    assert caught.value.details.get("execution_id") == running.id
    assert await store.inbox_for(running.id) == []
    assert await store.inbox_for(ex.id) == []
    again = make.execution(conversation="conv-b")
    retried = await store.create_triggered(
        again, make.started(again), [], trigger_message("conv-b", "m9"), replace_reason="x"
    )
    assert retried.status == "accepted"  # the refused attempt left no duplicate behind


async def test_an_interrupting_start_cancels_the_running_one(store: Store, make: Make) -> None:
    """replace_reason cancels the active execution in the same transaction, with the
    reason in its history and its trail, and bumps its fencing token."""
    running = await make.create(store, conversation="conv-i")
    [claim] = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    ex = make.execution(conversation="conv-i")
    reason = f"replaced by execution {ex.id}: the contact wrote 'menu'"
    result = await store.create_triggered(
        ex, make.started(ex), [], trigger_message("conv-i"), replace_reason=reason
    )
    assert result.status == "accepted"
    old = await store.get_execution(running.id)
    assert (old.status, old.outcome) == (S.CANCELLED, Outcome.CANCELLED)
    assert (await store.transitions(running.id))[-1].reason == reason
    ended = [r for r in await store.logs(running.id) if r.message == "execution.ended"]
    assert ended[0].context["reason"] == reason
    with pytest.raises(StaleLease):  # the worker that held it cannot commit any more
        await store.commit_step(make.step(claim.execution), now=T0 + 1)
    assert (await store.get_execution(ex.id)).status is S.RUNNING


# ------------------------------------------------------------------------------ bursts


async def test_pending_inbound_lists_unapplied_messages_in_order(store: Store, make: Make) -> None:
    """Oldest first, at most limit, applied ones left out."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    for n in range(4):
        await make.inbound(store, ex, f"t{n}", message_id=f"m{n}", now=T0 + n)
    pending = await store.pending_inbound(ex.id, limit=3)
    assert [m.message_id for m in pending] == ["m0", "m1", "m2"]
    claim = await make.claim(store, ex, now=T0 + 5)
    step = make.step(claim.execution, status=S.WAITING_INPUT, applied=[pending[0].id], at=T0 + 5)
    await store.commit_step(step, now=T0 + 5)
    assert [m.text for m in await store.pending_inbound(ex.id, limit=10)] == ["t1", "t2", "t3"]


async def test_snooze_releases_the_lease_due_later(store: Store, make: Make) -> None:
    """The execution is due at wake_at despite the replies waiting; a reply stored after
    makes it due now; a stale token is refused; the lines land with it."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None, due_at=T0 + 3600)
    await make.inbound(store, ex, "oi", message_id="m1", now=T0)
    claim = await make.claim(store, ex, now=T0)
    held = claim.execution
    line = make.log(held, "execution.taken_over", level="WARN")
    await store.snooze(
        ex.id,
        worker_id="w1",
        fencing_token=held.fencing_token,
        wake_at=T0 + 2,
        now=T0,
        logs=[line],
    )
    now = await store.get_execution(ex.id)
    assert (now.wake_at, now.lease_owner, now.status) == (T0 + 2, None, S.WAITING_INPUT)
    assert await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    assert "execution.taken_over" in [r.message for r in await store.logs(ex.id)]
    with pytest.raises(StaleLease):
        await store.snooze(
            ex.id, worker_id="w1", fencing_token=held.fencing_token, wake_at=T0 + 9, now=T0
        )
    await make.inbound(store, ex, "mais", message_id="m2", now=T0 + 1)
    assert (await store.get_execution(ex.id)).wake_at == T0 + 1
    [again] = await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10)
    assert again.inbound is not None and again.inbound.message_id == "m1"
