"""Moving an execution to another flow version is an operator write: fenced, audited,
read back whole on every backend."""

from __future__ import annotations

import pytest

from trilha.core.execution import LogRecord
from trilha.core.states import ExecutionStatus
from trilha.errors import StaleLease
from trilha.store.base import ExecutionFilter, Store

from .conftest import T0, Make

S = ExecutionStatus


def _migrated(execution_id: str, at: float) -> LogRecord:
    return LogRecord(
        execution_id,
        "INFO",
        "operator.migrated",
        at,
        "ask_v2",
        None,
        {"operation": "migrated", "fromVersion": 1, "toVersion": 2, "fromNode": "ask"},
    )


async def test_a_move_is_written_fenced_and_reads_back_on_the_new_version(
    store: Store, make: Make
) -> None:
    """The version, node and stack move with the audit line in one write; the row
    verifies its checksum; a second write with the token read before the first fails
    and changes nothing (a move is never applied twice)."""
    created = await make.create(
        store, status=S.WAITING_INPUT, node="ask", wake_at=None, flow_version=1
    )
    read = await store.get_execution(created.id)
    stale = await store.get_execution(created.id)
    read.flow_version, read.current_node_id = 2, "ask_v2"
    written = await store.operator_write(
        read,
        expected_token=read.fencing_token,
        transitions=[],
        logs=[_migrated(read.id, T0 + 1)],
        now=T0 + 1,
    )
    assert written.fencing_token == created.fencing_token + 1
    again = await store.get_execution(created.id)
    assert (again.flow_version, again.current_node_id, again.status) == (
        2,
        "ask_v2",
        S.WAITING_INPUT,
    )
    lines = [line for line in await store.logs(created.id) if line.message == "operator.migrated"]
    assert [(line.node_id, line.context["toVersion"]) for line in lines] == [("ask_v2", 2)]

    stale.flow_version, stale.current_node_id = 3, "elsewhere"
    with pytest.raises(StaleLease):
        await store.operator_write(
            stale,
            expected_token=stale.fencing_token,
            transitions=[],
            logs=[_migrated(stale.id, T0 + 2)],
            now=T0 + 2,
        )
    after = await store.get_execution(created.id)
    assert (after.flow_version, after.current_node_id) == (2, "ask_v2")
    assert len([x for x in await store.logs(created.id) if x.message == "operator.migrated"]) == 1
    listed = await store.list_executions(
        where=ExecutionFilter(flow_id="onboarding", status="waiting_input")
    )
    assert [(x.id, x.flow_version) for x in listed] == [(created.id, 2)]


async def test_a_worker_holding_the_execution_makes_the_move_fail(store: Store, make: Make) -> None:
    """Claimed by a worker after the operator's read: the claim bumped the token, so
    the move is refused and the worker's commit still holds its own token."""
    created = await make.create(store, status=S.WAITING_INPUT, node="ask", wake_at=T0)
    read = await store.get_execution(created.id)
    claimed = await make.claim(store, created)
    read.flow_version = 2
    with pytest.raises(StaleLease):
        await store.operator_write(
            read, expected_token=read.fencing_token, transitions=[], logs=[], now=T0 + 1
        )
    now = await store.get_execution(created.id)
    assert now.flow_version == 1 and now.fencing_token == claimed.execution.fencing_token
