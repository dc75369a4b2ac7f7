"""Store contract for the customer-service window and answers: when the contact last
wrote in a conversation (any execution's messages, a trigger's message included; never
another institution's), and the ``reply_to`` a bot message names, kept in the outbox and
read back by claim_outbox and outbox_for."""

from __future__ import annotations

import dataclasses

from trilha.core.execution import InboundMessage
from trilha.core.states import ExecutionStatus
from trilha.store.base import Store

from .conftest import LEASE, T0, Make

S = ExecutionStatus


async def test_never_written_is_none(store: Store, make: Make) -> None:
    """A conversation with no message from its contact has no time."""
    await make.create(store, institution="acme", conversation="c1")
    assert await store.last_inbound_at("acme", "c1") is None
    assert await store.last_inbound_at("acme", "missing") is None


async def test_the_newest_message_of_any_execution_counts(store: Store, make: Make) -> None:
    """The newest message of the conversation, applied or not, whichever execution it
    went to: the window is the conversation's, not one execution's."""
    first = await make.create(
        store, institution="acme", conversation="c1", status=S.WAITING_INPUT, wake_at=None
    )
    await make.inbound(store, first, "oi", now=T0 + 10)
    await make.inbound(store, first, "tudo bem?", now=T0 + 40)
    assert await store.last_inbound_at("acme", "c1") == T0 + 40
    # a duplicate delivery later is not a new message
    await make.inbound(store, first, "again", message_id="m-x", now=T0 + 50)
    await make.inbound(store, first, "again", message_id="m-x", now=T0 + 900)
    assert await store.last_inbound_at("acme", "c1") == T0 + 50
    # the first execution ends; a message to the next one of the conversation counts too
    claimed = await make.claim(store, first, now=T0 + 60)
    await store.commit_step(
        make.step(claimed.execution, status=S.COMPLETED, texts=(), at=T0 + 60), now=T0 + 60
    )
    second = await make.create(
        store, institution="acme", conversation="c1", status=S.WAITING_INPUT, wake_at=None
    )
    await make.inbound(store, second, "de novo", now=T0 + 7_200)
    assert await store.last_inbound_at("acme", "c1") == T0 + 7_200


async def test_a_triggers_message_counts(store: Store, make: Make) -> None:
    """The message that started an execution through a trigger is the contact's last."""
    ex = make.execution(institution="acme", conversation="wa:1:55", variables={})
    message = InboundMessage(
        id=0,
        institution_id="acme",
        conversation_id="wa:1:55",
        message_id="wamid-1",
        contact_id="55",
        text="oi",
        received_at=T0 + 3,
    )
    await store.create_triggered(ex, make.started(ex), [], message)
    assert await store.last_inbound_at("acme", "wa:1:55") == T0 + 3


async def test_another_institutions_conversation_never_counts(store: Store, make: Make) -> None:
    """The same conversation id at another institution is another conversation."""
    ours = await make.create(
        store, institution="acme", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    theirs = await make.create(
        store, institution="beta", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    await make.inbound(store, ours, "acme's", now=T0 + 5)
    await make.inbound(store, theirs, "beta's", now=T0 + 500)
    assert await store.last_inbound_at("acme", "shared") == T0 + 5
    assert await store.last_inbound_at("beta", "shared") == T0 + 500
    assert await store.last_inbound_at("gamma", "shared") is None


async def test_reply_to_is_kept_and_read_back(store: Store, make: Make) -> None:
    """A message's reply_to is stored with it and handed out by claim_outbox (what a
    channel sends) and outbox_for; a message answering nothing reads back None."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, texts=["Olá!", "Como posso ajudar?"], wake_at=None)
    answering = dataclasses.replace(commit.outbox[0], reply_to="wamid.HBgLNTU=")
    commit.outbox[0] = answering
    await store.commit_step(commit, now=T0)
    claimed_messages = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert [m.reply_to for m in claimed_messages] == ["wamid.HBgLNTU=", None]
    first = claimed_messages[0]
    assert first == dataclasses.replace(answering, id=first.id)
    assert [m.reply_to for m in await store.outbox_for(ex.id)] == ["wamid.HBgLNTU=", None]


async def test_reply_to_survives_a_restart(backend: object, store: Store, make: Make) -> None:
    """What the step committed is there for another process's dispatcher."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, texts=["Olá!"], wake_at=None)
    commit.outbox[0] = dataclasses.replace(commit.outbox[0], reply_to="m-42")
    await store.commit_step(commit, now=T0)
    other = await backend.reopen(store)  # type: ignore[attr-defined]
    [message] = await other.claim_outbox("d2", now=T0, lease_seconds=LEASE, limit=10)
    assert message.reply_to == "m-42"
