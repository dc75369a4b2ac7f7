"""Store contract: what ``trilha check`` reads (``execution_ids``, ``inbox_for``), and the
checker over executions built through real step commits.

Everything here speaks the :class:`~trilha.store.base.Store` protocol only; a row
corrupted behind the store's back (which needs raw SQL) is covered by
``tests/acceptance/test_check_cli.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from trilha.core.execution import Execution, LogRecord
from trilha.core.invariants import Violation
from trilha.core.states import ExecutionStatus
from trilha.observability import checker
from trilha.observability.checker import check_execution, check_store, walk
from trilha.store.base import StepCommit, Store

from .conftest import T0, Make

S = ExecutionStatus

#: how long a question waits for its reply in these tests
INPUT_TIMEOUT = 3600.0


# --------------------------------------------------------------------------- helpers


def speaking(commit: StepCommit, *, replies: dict[int, str] | None = None) -> StepCommit:
    """``commit`` as the engine writes it: a ``message.queued`` trail line per outbox
    message, and the input of the step that consumed a reply naming that reply."""
    ex = commit.execution
    logs = [
        *commit.logs,
        *(
            LogRecord(
                ex.id,
                "INFO",
                "message.queued",
                m.created_at,
                ex.current_node_id,
                None,
                {"idempotencyKey": m.idempotency_key, "text": m.text},
            )
            for m in commit.outbox
        ),
    ]
    checkpoints = commit.checkpoints
    if replies:
        seq_to_message = {seq: replies[row] for row, seq in commit.applied_inbox}
        checkpoints = [
            dataclasses.replace(c, input={"messageId": seq_to_message[c.seq], "text": "Ana Souza"})
            if c.seq in seq_to_message
            else c
            for c in checkpoints
        ]
    return dataclasses.replace(commit, logs=logs, checkpoints=checkpoints)


async def asked(store: Store, make: Make, **fields: object) -> Execution:
    """Start an execution and commit its first step: it greets, asks, and waits."""
    ex = await make.create(store, **fields)
    claimed = await make.claim(store, ex)
    commit = speaking(
        make.step(
            claimed.execution,
            status=S.WAITING_INPUT,
            node="ask",
            texts=("hello", "your name?"),
            wake_at=T0 + INPUT_TIMEOUT,
            due_at=T0 + INPUT_TIMEOUT,
            at=T0 + 1,
        )
    )
    await store.commit_step(commit, now=T0 + 1)
    return await store.get_execution(ex.id)


async def errors(store: Store, execution_id: str, now: float) -> list[tuple[str, str]]:
    found = await check_execution(store, execution_id, now=now, grace=60.0)
    assert found is not None
    return [(v.rule, v.detail) for v in found if v.severity == "error"]


# --------------------------------------------------------------------------- execution_ids


async def test_execution_ids_of_an_empty_store(store: Store) -> None:
    assert await store.execution_ids() == []
    assert await store.execution_ids(after="anything", limit=10) == []


async def test_execution_ids_are_every_row_in_id_order(store: Store, make: Make) -> None:
    """Whatever the creation order, status or tenant: ids sorted, each once."""
    await make.create(store, id="ex-c", created_at=T0)
    await make.create(store, id="ex-a", created_at=T0 + 1, institution="inst-2")
    done = await make.create(store, id="ex-b", created_at=T0 + 2)
    claimed = await make.claim(store, done)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0 + 3)
    await make.create(store, id="ex-d", status=S.WAITING_INPUT, wake_at=None)

    assert await store.execution_ids() == ["ex-a", "ex-b", "ex-c", "ex-d"]


async def test_execution_ids_page_with_after_and_limit(store: Store, make: Make) -> None:
    for name in ("e5", "e1", "e4", "e2", "e3"):
        await make.create(store, id=name)

    assert await store.execution_ids(limit=2) == ["e1", "e2"]
    assert await store.execution_ids(after="e2", limit=2) == ["e3", "e4"]
    assert await store.execution_ids(after="e4", limit=2) == ["e5"]
    assert await store.execution_ids(after="e5", limit=2) == []
    # ``after`` need not be an id in the store: the ids sorting after it
    assert await store.execution_ids(after="e25") == ["e3", "e4", "e5"]
    assert await store.execution_ids(after="", limit=1) == ["e1"]
    assert await store.execution_ids(limit=500) == ["e1", "e2", "e3", "e4", "e5"]

    paged: list[str] = []
    after: str | None = None
    while batch := await store.execution_ids(after=after, limit=2):
        paged += batch
        after = batch[-1]
    assert paged == ["e1", "e2", "e3", "e4", "e5"]


# --------------------------------------------------------------------------- inbox_for


async def test_inbox_for_is_the_execution_replies_in_arrival_order(
    store: Store, make: Make
) -> None:
    ex = await asked(store, make)
    other = await asked(store, make)
    first = await make.inbound(store, ex, "Ana Souza", message_id="wamid-1", now=T0 + 5)
    await make.inbound(store, other, "Bia", message_id="wamid-x", now=T0 + 6)
    second = await make.inbound(store, ex, "oi?", message_id="wamid-2", now=T0 + 7)
    # a duplicate is not stored again
    await make.inbound(store, ex, "Ana Souza", message_id="wamid-1", now=T0 + 8)

    inbox = await store.inbox_for(ex.id)
    assert [m.message_id for m in inbox] == ["wamid-1", "wamid-2"]
    assert [m.id for m in inbox] == [first.message.id, second.message.id]
    assert inbox[0].id < inbox[1].id
    assert [(m.text, m.received_at, m.applied_at) for m in inbox] == [
        ("Ana Souza", T0 + 5, None),
        ("oi?", T0 + 7, None),
    ]
    assert {m.execution_id for m in inbox} == {ex.id}
    assert [m.message_id for m in await store.inbox_for(other.id)] == ["wamid-x"]
    assert await store.inbox_for("no-such-execution") == []


async def test_inbox_for_shows_applied_at_after_a_commit_that_applied_one(
    store: Store, make: Make
) -> None:
    ex = await asked(store, make)
    first = await make.inbound(store, ex, "Ana Souza", message_id="wamid-1", now=T0 + 5)
    await make.inbound(store, ex, "oi?", message_id="wamid-2", now=T0 + 6)
    claimed = await make.claim(store, ex, now=T0 + 7)
    assert claimed.inbound is not None
    assert claimed.inbound.message_id == "wamid-1"
    commit = make.step(
        claimed.execution,
        status=S.WAITING_INPUT,
        node="ask_cpf",
        texts=("your CPF?",),
        applied=[first.message.id],
        wake_at=T0 + 8 + INPUT_TIMEOUT,
        due_at=T0 + 8 + INPUT_TIMEOUT,
        at=T0 + 8,
    )
    await store.commit_step(commit, now=T0 + 8)

    inbox = await store.inbox_for(ex.id)
    assert [(m.message_id, m.applied_at) for m in inbox] == [
        ("wamid-1", T0 + 8),
        ("wamid-2", None),
    ]


async def test_a_reply_to_a_conversation_with_no_active_execution_is_nobody_s(
    store: Store, make: Make
) -> None:
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0 + 1)
    late = await make.inbound(store, ex, "still there?", now=T0 + 2)
    assert late.message.execution_id is None
    assert await store.inbox_for(ex.id) == []


# --------------------------------------------------------------------------- the checker


async def test_executions_built_through_step_commits_break_no_rule(
    store: Store, make: Make
) -> None:
    """Start, ask, a reply arrives and is applied, answer, end: sound at every point."""
    ex = await asked(store, make)
    assert await check_execution(store, ex.id, now=T0 + 2, grace=60.0) == []

    reply = await make.inbound(store, ex, "Ana Souza", message_id="wamid-1", now=T0 + 5)
    assert (await store.get_execution(ex.id)).wake_at == T0 + 5  # due now: not stranded
    assert await check_execution(store, ex.id, now=T0 + 6, grace=60.0) == []

    claimed = await make.claim(store, ex, now=T0 + 6)
    assert claimed.inbound is not None
    # mid-turn, leased: still sound
    assert await check_execution(store, ex.id, now=T0 + 6, grace=60.0) == []
    read = speaking(
        make.step(
            claimed.execution,
            status=S.RUNNING,
            node="thanks",
            texts=(),
            applied=[reply.message.id],
            release=False,
            at=T0 + 7,
        ),
        replies={reply.message.id: "wamid-1"},
    )
    await store.commit_step(read, now=T0 + 7)
    assert await check_execution(store, ex.id, now=T0 + 7, grace=60.0) == []

    end = speaking(
        make.step(read.execution, status=S.COMPLETED, node="bye", texts=("bye!",), at=T0 + 8)
    )
    await store.commit_step(end, now=T0 + 8)
    done = await store.get_execution(ex.id)
    assert (done.status, done.step_seq) == (S.COMPLETED, 3)
    assert await check_execution(store, ex.id, now=T0 + 9, grace=60.0) == []
    # an ended execution is never overdue
    assert await check_execution(store, ex.id, now=T0 + 10**6, grace=60.0) == []


async def test_check_execution_of_an_unknown_id_is_none(store: Store) -> None:
    assert await check_execution(store, "no-such-execution", now=T0, grace=60.0) is None


async def test_check_execution_reads_the_trail_from_the_store(store: Store, make: Make) -> None:
    """A step whose messages have no ``message.queued`` line (written by something else)."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, texts=("hi",), release=True), now=T0 + 1)
    # released while running with no wake time: stranded, and its message unexplained
    assert await errors(store, ex.id, T0 + 2) == [
        ("state", "running, held by no worker and not due for one: stranded"),
        ("outbox", f"message {ex.id}:1:0 is in the outbox but no step sent it"),
    ]


async def test_check_execution_reads_the_inbox_from_the_store(store: Store, make: Make) -> None:
    """A reply marked applied by a step whose checkpoint does not name it."""
    ex = await asked(store, make)
    reply = await make.inbound(store, ex, "Ana Souza", message_id="wamid-1", now=T0 + 5)
    claimed = await make.claim(store, ex, now=T0 + 6)
    commit = speaking(
        make.step(
            claimed.execution,
            status=S.WAITING_INPUT,
            node="ask_cpf",
            texts=("your CPF?",),
            applied=[reply.message.id],  # Make's checkpoint input is {"text": "oi"}
            wake_at=T0 + 7 + INPUT_TIMEOUT,
            due_at=T0 + 7 + INPUT_TIMEOUT,
            at=T0 + 7,
        )
    )
    await store.commit_step(commit, now=T0 + 7)
    assert await errors(store, ex.id, T0 + 8) == [
        ("inbox", "message wamid-1 is marked applied but no step read it"),
    ]


async def test_overdue_work_is_a_warning_from_the_store(store: Store, make: Make) -> None:
    ex = await make.create(store, wake_at=T0)
    found = await check_execution(store, ex.id, now=T0 + 120, grace=60.0)
    assert found == [Violation(ex.id, "overdue", "due 120 s ago and no worker holds it", "warning")]
    assert await check_execution(store, ex.id, now=T0 + 120, grace=300.0) == []
    await make.claim(store, ex, now=T0 + 120)
    assert await check_execution(store, ex.id, now=T0 + 121, grace=60.0) == []


async def test_check_store_walks_every_execution_once(store: Store, make: Make) -> None:
    sound = await asked(store, make, id="a-sound")
    stranded = await make.create(store, id="b-stranded")
    claimed = await make.claim(store, stranded)
    await store.commit_step(
        speaking(make.step(claimed.execution, texts=("hi",))), now=T0 + 1
    )  # released, running, no wake time
    await make.create(store, id="c-other", institution="inst-2", wake_at=T0)

    report = await check_store(store, now=T0 + 2)
    assert report.checked == 3
    assert [(v.execution_id, v.rule) for v in report.violations] == [("b-stranded", "state")]
    assert (report.errors, report.warnings, report.broken_executions) == (1, 0, 1)

    seen = [eid async for eid, _ in walk(store, now=T0 + 2)]
    assert seen == [sound.id, "b-stranded", "c-other"]

    only_other = await check_store(store, now=T0 + 2, institution_id="inst-2")
    assert (only_other.checked, only_other.violations) == (1, [])
    nobody = await check_store(store, now=T0 + 2, institution_id="inst-404")
    assert (nobody.checked, nobody.violations) == (0, [])

    later = await check_store(store, now=T0 + 1000, grace=60.0)
    assert [(v.execution_id, v.rule, v.severity) for v in later.violations] == [
        ("b-stranded", "state", "error"),
        ("c-other", "overdue", "warning"),
    ]
    assert (later.errors, later.warnings, later.broken_executions) == (1, 1, 1)


async def test_check_store_pages_through_more_than_one_batch(
    store: Store, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk pages with ``execution_ids(after=...)``: nothing skipped, nothing twice."""
    monkeypatch.setattr(checker, "BATCH", 2)
    ids = [f"ex-{i:02d}" for i in range(7)]
    for eid in reversed(ids):
        await make.create(store, id=eid, wake_at=T0)
    seen = [eid async for eid, _ in walk(store, now=T0 + 1)]
    assert seen == ids
    report = await check_store(store, now=T0 + 1)
    assert (report.checked, report.violations) == (7, [])
