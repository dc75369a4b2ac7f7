"""Store contract: the reads behind the debugger's screens, through the protocol only.

How many executions are in each state (all, or one institution's), since when each
execution is in its state (its latest transition), and the listing narrowed to the
executions that had trouble: an error now, or a step that failed on the way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus, Outcome
from trilha.store.base import ExecutionFilter, Store

from .conftest import T0, Make

S = ExecutionStatus
F = ExecutionFilter
BOOM = {"kind": "http", "message": "crm answered 503"}


def _ids(executions: list[Execution]) -> list[str]:
    return [ex.id for ex in executions]


async def _step(
    store: Store,
    make: Make,
    ex: Execution,
    *,
    at: float,
    status: ExecutionStatus = S.RUNNING,
    error: dict[str, Any] | None = None,
    **fields: Any,
) -> Execution:
    """Claim ``ex`` and commit one step at ``at``: its checkpoint carries ``error``."""
    claimed = await make.claim(store, ex, now=at)
    commit = make.step(claimed.execution, status=status, at=at, **fields)
    commit.checkpoints = [dataclasses.replace(c, error=error) for c in commit.checkpoints]
    await store.commit_step(commit, now=at)
    return await store.get_execution(ex.id)


# --------------------------------------------------------------------------- counts


async def test_count_by_status_empty(store: Store) -> None:
    assert await store.count_by_status() == {}
    assert await store.count_by_status("inst-1") == {}


async def test_count_by_status_all_and_per_institution(store: Store, make: Make) -> None:
    for institution, status, n in (
        ("inst-1", S.RUNNING, 3),
        ("inst-1", S.WAITING_INPUT, 2),
        ("inst-1", S.COMPLETED, 1),
        ("inst-2", S.RUNNING, 1),
        ("inst-2", S.FAILED, 4),
        ("inst-3", S.PAUSED, 1),
    ):
        for _ in range(n):
            await make.create(store, institution=institution, status=status)
    assert await store.count_by_status() == {
        "running": 4,
        "waiting_input": 2,
        "completed": 1,
        "failed": 4,
        "paused": 1,
    }
    assert await store.count_by_status("inst-1") == {
        "running": 3,
        "waiting_input": 2,
        "completed": 1,
    }
    assert await store.count_by_status("inst-2") == {"running": 1, "failed": 4}
    assert await store.count_by_status("inst-3") == {"paused": 1}
    assert await store.count_by_status("nobody") == {}


async def test_counts_follow_a_step(store: Store, make: Make) -> None:
    ex = await make.create(store)
    other = await make.create(store, institution="inst-2")
    assert await store.count_by_status("inst-1") == {"running": 1}
    await _step(store, make, ex, at=T0 + 1, status=S.WAITING_INPUT)
    assert await store.count_by_status("inst-1") == {"waiting_input": 1}
    await _step(store, make, other, at=T0 + 2, status=S.COMPLETED)
    assert await store.count_by_status() == {"waiting_input": 1, "completed": 1}


# --------------------------------------------------------------------------- status since


async def test_status_since_is_the_latest_transition(store: Store, make: Make) -> None:
    born = await make.create(store, created_at=T0 - 50, wake_at=T0 - 50)
    stepped = await make.create(store, created_at=T0 - 40, wake_at=T0 - 40)
    await _step(store, make, stepped, at=T0 + 5, status=S.WAITING_INPUT)
    same = await make.create(store, created_at=T0 - 30, wake_at=T0 - 30)
    await _step(store, make, same, at=T0 + 6)  # stays running: no transition
    operated = await make.create(store, created_at=T0 - 20, wake_at=T0 - 20)
    stored = await store.get_execution(operated.id)
    paused = dataclasses.replace(
        stored,
        variables=dict(stored.variables),
        node_state=dict(stored.node_state),
        start_variables=dict(stored.start_variables),
    )
    paused.status, paused.paused_from, paused.wake_at = S.PAUSED, S.RUNNING, None
    await store.operator_write(
        paused,
        expected_token=stored.fencing_token,
        transitions=[make.transition(paused, S.RUNNING, S.PAUSED, "paused", at=T0 + 9)],
        logs=[],
        now=T0 + 9,
    )
    found = await store.status_since([born.id, stepped.id, same.id, operated.id, "ex-missing"])
    assert found == {
        born.id: T0 - 50,
        stepped.id: T0 + 5,
        same.id: T0 - 30,
        operated.id: T0 + 9,
    }
    assert await store.status_since([]) == {}
    assert await store.status_since(["nope", "nada"]) == {}
    assert await store.status_since([stepped.id, stepped.id]) == {stepped.id: T0 + 5}


async def test_status_since_after_several_changes(store: Store, make: Make) -> None:
    ex = await make.create(store)
    ex = await _step(store, make, ex, at=T0 + 1, status=S.WAITING_INPUT, wake_at=T0 + 2)
    ex = await _step(store, make, ex, at=T0 + 3, status=S.RUNNING, wake_at=T0 + 3)
    ex = await _step(store, make, ex, at=T0 + 7, status=S.COMPLETED)
    assert [t.at for t in await store.transitions(ex.id)] == [T0, T0 + 1, T0 + 3, T0 + 7]
    assert await store.status_since([ex.id]) == {ex.id: T0 + 7}


# --------------------------------------------------------------------------- with errors


async def _troubled(store: Store, make: Make) -> dict[str, Execution]:
    """Executions with and without trouble, created one second apart (newest last)."""
    made: dict[str, Execution] = {}

    async def new(name: str, **fields: Any) -> Execution:
        at = T0 + len(made)
        made[name] = await make.create(store, **({"created_at": at, "wake_at": at} | fields))
        return made[name]

    await new("clean")  # no step at all
    clean_steps = await new("clean_steps")
    await _step(store, make, clean_steps, at=T0 + 100)
    await new("error_now", status=S.FAILED, error=BOOM, outcome=Outcome.FAILED, wake_at=None)
    retried = await new("failed_step")  # a step failed, the retry worked: no error now
    await _step(
        store, make, retried, at=T0 + 101, status=S.RECOVERING, error=BOOM, wake_at=T0 + 102
    )
    await _step(store, make, await store.get_execution(retried.id), at=T0 + 102)
    await new("other_error", institution="inst-2", error=BOOM)
    other_step = await new("other_failed_step", institution="inst-2")
    await _step(store, make, other_step, at=T0 + 103, error=BOOM)
    await new("other_clean", institution="inst-2")
    await new("waiting_error", status=S.RECOVERING, error=BOOM)
    return made


async def test_with_errors_lists_errors_now_and_failed_steps(store: Store, make: Make) -> None:
    made = await _troubled(store, make)
    ids = {ex.id: name for name, ex in made.items()}

    async def listed(**where: Any) -> list[str]:
        found = await store.list_executions(where=F(with_errors=True, **where))
        return [ids[i] for i in _ids(found)]

    assert await listed() == [
        "waiting_error",
        "other_failed_step",
        "other_error",
        "failed_step",
        "error_now",
    ]
    assert await listed(institution_id="inst-1") == ["waiting_error", "failed_step", "error_now"]
    assert await listed(institution_id="inst-2") == ["other_failed_step", "other_error"]
    assert await listed(status="failed") == ["error_now"]
    assert await listed(status="running") == ["other_failed_step", "other_error", "failed_step"]
    assert await listed(status="running", institution_id="inst-1") == ["failed_step"]
    assert await listed(status="completed") == []
    assert await listed(institution_id="nobody") == []
    # without the filter every execution is listed
    everything = await store.list_executions(where=F())
    assert len(everything) == len(made)
    assert len(await store.list_executions(where=F(with_errors=False))) == len(made)


async def test_with_errors_pages(store: Store, make: Make) -> None:
    made = await _troubled(store, make)
    ids = {ex.id: name for name, ex in made.items()}
    where = F(with_errors=True)
    first = await store.list_executions(limit=2, where=where)
    assert [ids[i] for i in _ids(first)] == ["waiting_error", "other_failed_step"]
    last = first[-1]
    second = await store.list_executions(limit=2, where=where, before=(last.created_at, last.id))
    assert [ids[i] for i in _ids(second)] == ["other_error", "failed_step"]
    last = second[-1]
    third = await store.list_executions(limit=2, where=where, before=(last.created_at, last.id))
    assert [ids[i] for i in _ids(third)] == ["error_now"]
    inst = F(with_errors=True, institution_id="inst-1")
    page = await store.list_executions(
        limit=1, where=inst, before=(made["failed_step"].created_at, made["failed_step"].id)
    )
    assert [ids[i] for i in _ids(page)] == ["error_now"]


async def test_an_error_cleared_by_a_later_step_still_counts_by_its_checkpoint(
    store: Store, make: Make
) -> None:
    """The execution's error field is cleared, the failed step's checkpoint is kept."""
    ex = await make.create(store, error=BOOM)
    assert _ids(await store.list_executions(where=F(with_errors=True))) == [ex.id]
    later = await _step(store, make, ex, at=T0 + 1, error=None, status=S.COMPLETED)
    assert later.error == BOOM  # the builder keeps the row's error: clear it as an operator
    cleared = dataclasses.replace(
        later,
        variables=dict(later.variables),
        node_state=dict(later.node_state),
        start_variables=dict(later.start_variables),
        error=None,
    )
    await store.operator_write(
        cleared, expected_token=later.fencing_token, transitions=[], logs=[], now=T0 + 2
    )
    assert (await store.get_execution(ex.id)).error is None
    assert _ids(await store.list_executions(where=F(with_errors=True))) == []
    failed_step = await make.create(store, created_at=T0 + 5, wake_at=T0 + 5)
    await _step(store, make, failed_step, at=T0 + 6, error=BOOM)
    assert _ids(await store.list_executions(where=F(with_errors=True))) == [failed_step.id]
