"""Store contract: when an execution last heard from its side of the conversation (its
contact's messages, a person handing it back), which a session's expiry counts from."""

from __future__ import annotations

import dataclasses

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus
from trilha.store.base import Store

from .conftest import T0, Make

S = ExecutionStatus


async def _operator(
    store: Store, make: Make, ex: Execution, target: ExecutionStatus, *, at: float
) -> Execution:
    """An operator's pause or resume, written as the operator writes it."""
    stored = await store.get_execution(ex.id)
    changed = dataclasses.replace(
        stored,
        variables=dict(stored.variables),
        node_state=dict(stored.node_state),
        start_variables=dict(stored.start_variables),
    )
    if target is S.PAUSED:
        changed.paused_from, changed.wake_at, changed.waiting_for = stored.status, None, "operator"
    else:
        changed.paused_from, changed.wake_at, changed.waiting_for = None, at, "input"
    changed.status = target
    return await store.operator_write(
        changed,
        expected_token=stored.fencing_token,
        transitions=[make.transition(changed, stored.status, target, "operator", at=at)],
        logs=[],
        now=at,
    )


async def test_nothing_heard_is_none(store: Store, make: Make) -> None:
    """A new execution, and one that does not exist, have heard nothing."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    assert await store.last_heard_at(ex.id) is None
    assert await store.last_heard_at("ex-missing") is None


async def test_the_latest_message_applied_or_not(store: Store, make: Make) -> None:
    """Every message routed to the execution counts, whether a step applied it yet or
    not (a message sent during a delay waits in the inbox)."""
    ex = await make.create(store, status=S.WAITING_DELAY, wake_at=T0 + 3600)
    await make.inbound(store, ex, "one", now=T0 + 10)
    await make.inbound(store, ex, "two", now=T0 + 25)
    assert await store.last_heard_at(ex.id) == T0 + 25
    await make.inbound(store, ex, "two again", message_id="msg-again", now=T0 + 30)
    await make.inbound(store, ex, "duplicate", message_id="msg-again", now=T0 + 99)
    assert await store.last_heard_at(ex.id) == T0 + 30  # a duplicate is not a new message


async def test_a_return_from_paused_counts_a_pause_does_not(store: Store, make: Make) -> None:
    """A person holding the conversation and giving it back starts the silence over:
    the transition out of ``paused`` counts, the one into it does not."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    await make.inbound(store, ex, "hi", now=T0 + 5)
    await _operator(store, make, ex, S.PAUSED, at=T0 + 20)
    assert await store.last_heard_at(ex.id) == T0 + 5
    await _operator(store, make, ex, S.WAITING_INPUT, at=T0 + 500)
    assert await store.last_heard_at(ex.id) == T0 + 500
    await make.inbound(store, ex, "back", now=T0 + 700)
    assert await store.last_heard_at(ex.id) == T0 + 700


async def test_only_its_own_conversation_counts(store: Store, make: Make) -> None:
    """Another institution's conversation of the same id, and another execution, never
    count: each execution hears only its own contact."""
    ours = await make.create(
        store, institution="acme", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    theirs = await make.create(
        store, institution="beta", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    other = await make.create(store, institution="acme", status=S.WAITING_INPUT, wake_at=None)
    await make.inbound(store, theirs, "beta's contact", now=T0 + 40)
    await make.inbound(store, other, "another conversation", now=T0 + 50)
    assert await store.last_heard_at(ours.id) is None
    assert await store.last_heard_at(theirs.id) == T0 + 40
    assert await store.last_heard_at(other.id) == T0 + 50
