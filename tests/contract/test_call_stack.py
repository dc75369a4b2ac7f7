"""Store contract: an execution's call stack (sub-flows that return) is kept with the
row, through every way a row is written and read, on every backend; a stack that does
not read back makes the row corrupted, and what is salvaged of it names the flow the
execution started in."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import orjson
import pytest

from trilha.core.execution import checksum, verified_state
from trilha.core.frames import frames
from trilha.core.states import ExecutionStatus
from trilha.errors import CorruptedRecord
from trilha.store.base import Store

from .conftest import T0, Backend, Make, SQLiteBackend

S = ExecutionStatus

CALLER: dict[str, Any] = {
    "flowId": "acme/main",
    "version": 3,
    "nodeId": "get_address",
    "variables": {"secret": "caller-only", "n": [1, 2]},
    "output": {"address": "result"},
}


def in_sub_flow(make: Make, **fields: Any) -> Any:
    """An execution inside a sub-flow of ``acme/main``."""
    return make.execution(
        flow_id="acme/address",
        node="ask_cep",
        variables={"cep": "01001-000"},
        stack=[CALLER],
        **fields,
    )


async def test_the_stack_is_kept_through_create_commit_claim_and_reopen(
    backend: Backend, store: Store, make: Make
) -> None:
    """Created, committed with a step (checkpoint included), claimed, written by an
    operator and read after a reopen: the same stack, verifying its checksum."""
    ex = in_sub_flow(make)
    created = await store.create_execution(ex, make.started(ex), [make.log(ex)])
    assert (await store.get_execution(created.id)).stack == [CALLER]

    claimed = (await make.claim(store, created)).execution
    assert claimed.stack == [CALLER]
    deeper = {**CALLER, "flowId": "acme/address", "nodeId": "call_b", "variables": {"cep": "x"}}
    claimed.stack = [CALLER, deeper]
    commit = make.step(claimed, status=S.WAITING_INPUT, wake_at=T0 + 60)
    await store.commit_step(commit, now=T0 + 1)
    (cp,) = await store.checkpoints(created.id)
    state = verified_state(cp)
    assert state is not None and state["stack"] == [CALLER, deeper]

    read = await store.get_execution(created.id)
    assert [f.node_id for f in frames(read.stack)] == ["get_address", "call_b"]
    read.stack = [CALLER]
    written = await store.operator_write(
        read, expected_token=read.fencing_token, transitions=[], logs=[], now=T0 + 2
    )
    assert written.stack == [CALLER]

    store = await backend.reopen(store)
    again = await store.get_execution(created.id)
    assert again.stack == [CALLER] and again.variables == {"cep": "01001-000"}


async def test_a_row_without_a_stack_verifies_as_before(store: Store, make: Make) -> None:
    """Outside a sub-flow the stack is not part of the checksummed state, so rows and
    checkpoints written before it existed still verify."""
    ex = make.execution()
    payload = orjson.loads(ex.state_payload())
    assert "stack" not in payload
    created = await make.create(store)
    assert (await store.get_execution(created.id)).stack == []


async def test_the_checksum_covers_the_stack(sqlite_backend: SQLiteBackend, make: Make) -> None:
    """A caller's variables changed behind the store's back: the row is corrupted (its
    checksum no longer holds), and what is salvaged of it names the flow the execution
    started in, for a restart without a valid checkpoint."""
    store = await sqlite_backend.open()
    ex = in_sub_flow(make, wake_at=T0 - 1)
    created = await store.create_execution(ex, make.started(ex), [make.log(ex)])
    await sqlite_backend.close(store)
    tampered = [{**CALLER, "variables": {"secret": "changed"}}]
    with closing(sqlite3.connect(sqlite_backend.path)) as conn, conn:
        conn.execute(
            "UPDATE executions SET stack = ? WHERE id = ?", (orjson.dumps(tampered), created.id)
        )
    store = await sqlite_backend.open()
    with pytest.raises(CorruptedRecord, match="checksum"):
        await store.get_execution(created.id)
    (claim,) = await store.claim_due("w1", now=T0, lease_seconds=30, limit=5)
    assert claim.corruption is not None
    assert (claim.execution.flow_id, claim.execution.flow_version) == ("acme/main", 3)
    await sqlite_backend.close(store)


def test_a_checkpoint_with_a_broken_stack_is_not_restored_from(make: Make) -> None:
    """A checkpoint whose stack is not frames fails its checks even with a matching
    checksum: recovery walks back past it."""
    ex = in_sub_flow(make)
    good = make.checkpoint(ex, 1)
    assert verified_state(good) is not None
    state = orjson.loads(good.state)
    state["stack"] = [{"flowId": "acme/main"}]  # no version, node or variables
    text = orjson.dumps(state).decode()
    broken = make.checkpoint(ex, 2)
    broken = type(broken)(**{**_fields(broken), "state": text, "checksum": checksum(text)})
    assert verified_state(broken) is None


def _fields(cp: Any) -> dict[str, Any]:
    return {name: getattr(cp, name) for name in cp.__dataclass_fields__}
