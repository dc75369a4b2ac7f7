"""Store contract: undelivered messages can be listed by institution and sent again, and
a delivery's trail lines land with its outcome (issue 17 §3)."""

from __future__ import annotations

from trilha.core.execution import Execution, LogRecord
from trilha.store.base import Store

from .conftest import LEASE, T0, Make


async def _with_messages(
    store: Store, make: Make, *texts: str, institution: str = "inst-1"
) -> Execution:
    ex = await make.create(store, institution=institution)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, texts=texts, wake_at=None), now=T0)
    return ex


async def _kill(store: Store, ex: Execution, now: float = T0 + 1) -> list[int]:
    """Give up every message of ``ex`` (the dispatcher's last failed attempt)."""
    ids = []
    for message in await store.outbox_for(ex.id):
        assert message.id is not None
        await store.mark_failed(message.id, error="answered 503", retry_at=None, now=now)
        ids.append(message.id)
    return ids


def _line(ex: Execution, message: str, level: str = "INFO", **context: object) -> LogRecord:
    return LogRecord(ex.id, level, message, T0 + 1, None, None, dict(context))


async def test_a_failed_attempt_writes_its_trail_lines_with_it(store: Store, make: Make) -> None:
    """mark_failed and mark_sent store the dispatcher's lines in the same write, masked
    like every trail line."""
    ex = await _with_messages(store, make, "one", "two")
    one, two = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert one.id is not None and two.id is not None
    failed = _line(
        ex, "message.delivery_failed", "WARN", attempt=1, error="ana@example.com rejected"
    )
    await store.mark_failed(one.id, error="503", retry_at=T0 + 5, now=T0 + 1, logs=[failed])
    await store.mark_sent([two.id], now=T0 + 1, logs=[_line(ex, "message.delivered")])
    lines = [(r.message, r.level) for r in await store.logs(ex.id)]
    assert lines[-2:] == [("message.delivery_failed", "WARN"), ("message.delivered", "INFO")]
    stored = next(r for r in await store.logs(ex.id) if r.message == "message.delivery_failed")
    assert "ana@example.com" not in str(stored.context)


async def test_dead_and_pending_messages_are_listed_by_institution(
    store: Store, make: Make
) -> None:
    """list_outbox answers one state, oldest first, one institution's (or every one's),
    a page at a time; count_dead_outbox counts the given-up ones."""
    a = await _with_messages(store, make, "a1", "a2", institution="acme")
    b = await _with_messages(store, make, "b1", institution="globex")
    c = await _with_messages(store, make, "c1", institution="acme")
    await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    dead = await _kill(store, a) + await _kill(store, b)
    assert await store.count_dead_outbox() == 3
    assert await store.count_dead_outbox("acme") == 2
    assert await store.count_dead_outbox("initech") == 0

    every = await store.list_outbox("dead")
    assert [m.id for m in every] == sorted(dead)
    assert [m.text for m in every] == ["a1", "a2", "b1"]
    first = every[0]
    assert (first.status, first.attempts, first.last_error) == ("dead", 1, "answered 503")
    assert first.next_attempt_at is None
    assert (first.execution_id, first.institution_id) == (a.id, "acme")
    assert (first.conversation_id, first.contact_id) == (a.conversation_id, a.contact_id)
    assert first.created_at == T0

    acme = await store.list_outbox("dead", institution_id="acme")
    assert [m.text for m in acme] == ["a1", "a2"]
    page = await store.list_outbox("dead", institution_id="acme", limit=1)
    assert [m.text for m in page] == ["a1"]
    rest = await store.list_outbox("dead", institution_id="acme", after=page[0].id)
    assert [m.text for m in rest] == ["a2"]
    assert await store.list_outbox("dead", institution_id="initech") == []

    pending = await store.list_outbox("pending")
    assert [(m.text, m.execution_id) for m in pending] == [("c1", c.id)]
    assert await store.list_outbox("pending", institution_id="globex") == []


async def test_a_redrive_makes_a_dead_message_due_now(store: Store, make: Make) -> None:
    """redrive_outbox puts a dead message back, due now, attempts reset, and writes
    ``message.redriven`` naming who did it; the dispatcher then claims it again."""
    ex = await _with_messages(store, make, "lost")
    await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    (dead,) = await _kill(store, ex)
    assert await store.claim_outbox("d2", now=T0 + 100, lease_seconds=LEASE, limit=10) == []

    done = await store.redrive_outbox(dead, institution_id="inst-1", now=T0 + 200, actor="key:ops1")
    assert done.outcome == "redriven" and done.item is not None
    assert (done.item.id, done.item.status, done.item.attempts) == (dead, "pending", 0)
    assert done.item.next_attempt_at == T0 + 200
    assert await store.count_dead_outbox() == 0
    line = (await store.logs(ex.id))[-1]
    assert (line.message, line.level) == ("message.redriven", "INFO")
    assert line.context["actor"] == "key:ops1"
    assert line.context["from"] == "dead"
    assert line.context["attempts"] == 1
    assert line.context["idempotencyKey"] == (await store.outbox_for(ex.id))[0].idempotency_key

    again = await store.claim_outbox("d2", now=T0 + 200, lease_seconds=LEASE, limit=10)
    assert [(m.id, m.attempts) for m in again] == [(dead, 0)]


async def test_a_pending_message_is_redriven_too(store: Store, make: Make) -> None:
    """A message waiting for its next attempt is made due now instead."""
    ex = await _with_messages(store, make, "late")
    (msg,) = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert msg.id is not None
    await store.mark_failed(msg.id, error="timeout", retry_at=T0 + 300, now=T0 + 1)
    done = await store.redrive_outbox(msg.id, institution_id=None, now=T0 + 2, actor="key:adm")
    assert done.outcome == "redriven"
    (now_due,) = await store.claim_outbox("d2", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert now_due.id == msg.id
    assert [r.message for r in await store.logs(ex.id)][-1] == "message.redriven"


async def test_a_redrive_is_refused_for_another_tenant_or_a_sent_message(
    store: Store, make: Make
) -> None:
    """Another institution's message is not found (and untouched); a sent one is
    reported as sent and left alone; an unknown id is not found."""
    ex = await _with_messages(store, make, "theirs", "sent")
    theirs, sent = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert theirs.id is not None and sent.id is not None
    await store.mark_failed(theirs.id, error="gone", retry_at=None, now=T0 + 1)
    await store.mark_sent([sent.id], now=T0 + 1)
    lines = len(await store.logs(ex.id))

    other = await store.redrive_outbox(theirs.id, institution_id="globex", now=T0, actor="k")
    assert (other.outcome, other.item) == ("not_found", None)
    assert await store.count_dead_outbox() == 1
    done = await store.redrive_outbox(sent.id, institution_id="inst-1", now=T0, actor="k")
    assert done.outcome == "sent"
    assert (await store.outbox_for(ex.id))[1].status == "sent"
    missing = await store.redrive_outbox(10**9, institution_id=None, now=T0, actor="k")
    assert missing.outcome == "not_found"
    assert len(await store.logs(ex.id)) == lines
