"""Store contract: the reads behind alerts and ``trilha stats``, log retention, alert state.

Every figure here is one the alert rules or an operator act on, so each test builds
executions whose steps and turns are known by construction (through the protocol,
as the engine writes them) and checks the exact aggregate, window edges included.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from trilha.core.alerts import AlertState, AlertStatus
from trilha.core.execution import Execution, TurnRecord
from trilha.core.states import ExecutionStatus, Outcome
from trilha.store.base import (
    FlowTurnStats,
    InstitutionErrors,
    LongestTurn,
    SlowNode,
    Store,
    StoreStats,
)

from .conftest import T0, Backend, Make

S = ExecutionStatus


@dataclass(frozen=True)
class Node:
    """One node execution: which node, its type, how long it took, whether it failed."""

    id: str
    type: str | None
    seconds: float
    failed: bool = False
    at: float = T0


async def ran(
    store: Store,
    make: Make,
    nodes: Iterable[Node],
    *,
    institution: str = "inst-1",
    flow: str = "onboarding",
    status: ExecutionStatus = S.COMPLETED,
    ended: float = T0,
    turns: Iterable[tuple[float, float]] = (),
    created: float = T0,
) -> Execution:
    """An execution that ran ``nodes`` (one checkpoint each) and finished ``turns``,
    committed the way the engine commits a run of steps; it ends in ``status`` at
    ``ended`` when that status is terminal."""
    ex = await make.create(store, institution=institution, flow_id=flow, created_at=created)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, status=status, at=ended)
    template = commit.checkpoints[0]
    commit.checkpoints[:] = [
        dataclasses.replace(
            template,
            seq=seq,
            node_id=n.id,
            node_type=n.type,
            started_at=n.at,
            duration=n.seconds,
            error={"type": "DependencyError", "message": "503"} if n.failed else None,
        )
        for seq, n in enumerate(nodes, start=1)
    ]
    commit.execution.step_seq = max(1, len(commit.checkpoints))
    commit.turns.extend(
        TurnRecord(ex.id, institution, flow, 1, start, end, status.value) for start, end in turns
    )
    await store.commit_step(commit, now=ended)
    return await store.get_execution(ex.id)


# ------------------------------------------------------------------------- step_outcomes


async def test_step_outcomes_of_an_empty_store(store: Store) -> None:
    """No steps: zero of each, not an error (the error-rate rule then judges nothing)."""
    assert await store.step_outcomes(T0) == (0, 0)


async def test_step_outcomes_count_node_executions_and_failures_since(
    store: Store, make: Make
) -> None:
    """Steps started at or after ``since`` count, failed ones separately; older steps and
    checkpoints that ran no node (no node type) do not."""
    await ran(
        store,
        make,
        [
            Node("old", "http", 0.1, failed=True, at=T0 - 1),
            Node("edge", "message", 0.1, at=T0),
            Node("a", "http", 0.1, failed=True, at=T0 + 10),
            Node("b", "message", 0.1, at=T0 + 11),
        ],
        status=S.FAILED,
    )
    await ran(
        store,
        make,
        [Node("c", "http", 0.2, failed=True, at=T0 + 20), Node("gone", None, 0.0, failed=True)],
        institution="inst-2",
    )
    assert await store.step_outcomes(T0) == (4, 2)
    assert await store.step_outcomes(T0 - 1) == (5, 3)
    assert await store.step_outcomes(T0 + 11) == (2, 1)
    assert await store.step_outcomes(T0 + 21) == (0, 0)


# -------------------------------------------------------------------------- longest_turn


async def test_longest_turn_of_an_empty_store(store: Store) -> None:
    assert await store.longest_turn(T0, T0 + 60) is None


async def test_longest_turn_among_finished_turns_in_the_window(store: Store, make: Make) -> None:
    """The longest turn that ended at or after ``since``; a longer one that ended before
    the window is history, not a current slowness."""
    a = await ran(store, make, [], turns=[(T0, T0 + 5), (T0 + 8, T0 + 20)])
    old = await ran(store, make, [], turns=[(T0 - 500, T0 - 460)])
    b = await ran(store, make, [], turns=[(T0 + 30, T0 + 37)])

    assert await store.longest_turn(T0, T0 + 100) == LongestTurn(12.0, a.id, running=False)
    assert await store.longest_turn(T0 + 21, T0 + 100) == LongestTurn(7.0, b.id, running=False)
    assert await store.longest_turn(T0 - 460, T0 + 100) == LongestTurn(40.0, old.id, running=False)
    assert await store.longest_turn(T0 + 38, T0 + 100) is None


async def test_a_running_turn_counts_with_its_length_so_far(store: Store, make: Make) -> None:
    """An execution mid-turn (``turn_started_at`` set) counts as a turn of ``now`` minus
    its start, the oldest such one, whatever the window: a stuck turn is slow now even
    if no turn ended lately. A finished turn that is longer still wins."""
    finished = await ran(store, make, [], turns=[(T0, T0 + 12)])
    await make.create(store, turn_started_at=T0 + 5)
    oldest = await make.create(store, turn_started_at=T0 + 2)
    await make.create(store, status=S.WAITING_INPUT, wake_at=None)  # between turns

    assert await store.longest_turn(T0, T0 + 30) == LongestTurn(28.0, oldest.id, running=True)
    assert await store.longest_turn(T0, T0 + 10) == LongestTurn(12.0, finished.id, running=False)
    # nothing finished in the window: the running turn alone
    assert await store.longest_turn(T0 + 13, T0 + 10) == LongestTurn(8.0, oldest.id, running=True)


async def test_a_recovering_turn_is_running(store: Store, make: Make) -> None:
    """A turn waiting out a retry backoff is still the contact's wait: it counts."""
    ex = await make.create(store, turn_started_at=T0)
    claimed = await make.claim(store, ex)
    await store.commit_step(
        make.step(claimed.execution, status=S.RECOVERING, wake_at=T0 + 60, due_at=T0 + 60),
        now=T0 + 1,
    )
    assert await store.longest_turn(T0, T0 + 45) == LongestTurn(45.0, ex.id, running=True)


@pytest.mark.parametrize("end", [S.CANCELLED, S.PAUSED])
async def test_a_turn_stopped_by_an_operator_is_not_running(
    store: Store, make: Make, end: ExecutionStatus
) -> None:
    """An operator cancels or pauses an execution mid-turn (recovering) without ending
    the turn: nothing runs it any more, so it must not read as a turn growing forever
    (the slow-turn alert would fire until someone deleted the row)."""
    ex = await make.create(store, turn_started_at=T0)
    claimed = await make.claim(store, ex)
    await store.commit_step(
        make.step(claimed.execution, status=S.RECOVERING, wake_at=T0 + 60, due_at=T0 + 60),
        now=T0 + 1,
    )
    stored = await store.get_execution(ex.id)
    assert stored.turn_started_at == T0
    changed = dataclasses.replace(
        stored,
        variables=dict(stored.variables),
        node_state=dict(stored.node_state),
        start_variables=dict(stored.start_variables),
    )
    changed.status, changed.wake_at = end, None
    if end is S.CANCELLED:
        changed.outcome, changed.ended_at = Outcome.CANCELLED, T0 + 2
    else:
        changed.paused_from, changed.waiting_for = S.RECOVERING, "operator"
    transition = make.transition(changed, S.RECOVERING, end, "by an operator", at=T0 + 2)
    await store.operator_write(
        changed,
        expected_token=stored.fencing_token,
        transitions=[transition],
        logs=[],
        now=T0 + 2,
    )
    assert (await store.get_execution(ex.id)).turn_started_at == T0  # as the operator left it
    assert await store.longest_turn(T0, T0 + 3600) is None


# --------------------------------------------------------------------------------- stats


async def _traffic(store: Store, make: Make) -> dict[str, Execution]:
    """Four executions over two institutions and two flows; one well before the window."""
    a = await ran(
        store,
        make,
        [
            Node("welcome", "message", 0.002, at=T0 + 1),
            Node("ask", "question", 0.010, at=T0 + 1),
            Node("lookup", "http", 0.500, failed=True, at=T0 + 2),
            Node("lookup", "http", 0.300, failed=True, at=T0 + 3),
        ],
        institution="acme",
        status=S.FAILED,
        ended=T0 + 4,
        turns=[(T0, T0 + 2)],
    )
    b = await ran(
        store,
        make,
        [
            Node("welcome", "message", 0.004, at=T0 + 1),
            Node("ask", "question", 0.020, at=T0 + 1),
            Node("lookup", "http", 0.100, at=T0 + 6),
            Node("bye", "end", 0.001, at=T0 + 7),
        ],
        institution="acme",
        ended=T0 + 9,
        turns=[(T0, T0 + 1), (T0 + 5, T0 + 9)],
    )
    c = await ran(
        store,
        make,
        [
            Node("greet", "message", 0.006, at=T0 + 1),
            Node("classify", "ai", 1.0, failed=True, at=T0 + 2),
            Node("classify", "ai", 2.0, at=T0 + 4),
            Node("bye", "end", 0.001, at=T0 + 6),
        ],
        institution="beta",
        flow="support",
        ended=T0 + 6,
        turns=[(T0, T0 + 3)],
    )
    old = await ran(
        store,
        make,
        [Node("greet", "message", 9.0, failed=True, at=T0 - 7200)],
        institution="beta",
        flow="support",
        status=S.FAILED,
        ended=T0 - 7100,
        turns=[(T0 - 7300, T0 - 7100)],
        created=T0 - 7300,
    )
    return {"a": a, "b": b, "c": c, "old": old}


def _by_type(stats: StoreStats) -> dict[str, tuple[int, int, float]]:
    runs = [n.runs for n in stats.node_types]
    assert runs == sorted(runs, reverse=True)  # busiest first
    return {n.node_type: (n.runs, n.errors, n.mean_seconds) for n in stats.node_types}


async def test_stats_of_an_empty_store(store: Store) -> None:
    assert await store.stats(T0) == StoreStats(T0, [], [], [], [])


async def test_stats_aggregate_node_types_flows_institutions_and_slow_nodes(
    store: Store, make: Make
) -> None:
    """Every section over the window only: the old execution's failure and its long turn
    are left out everywhere."""
    await _traffic(store, make)
    stats = await store.stats(T0 - 60, limit=3)
    assert stats.since == T0 - 60
    assert _by_type(stats) == {
        "message": (3, 0, pytest.approx(0.004)),
        "http": (3, 2, pytest.approx(0.3)),
        "question": (2, 0, pytest.approx(0.015)),
        "ai": (2, 1, pytest.approx(1.5)),
        "end": (2, 0, pytest.approx(0.001)),
    }
    assert stats.flows == [
        FlowTurnStats("onboarding", 3, pytest.approx(7 / 3), 4.0, 4.0),
        FlowTurnStats("support", 1, 3.0, 3.0, 3.0),
    ]
    assert stats.institutions == [InstitutionErrors("acme", 2, 1), InstitutionErrors("beta", 1, 0)]
    assert stats.slowest_nodes == [
        SlowNode("support", "classify", "ai", 2, pytest.approx(1.5), 2.0),
        SlowNode("onboarding", "lookup", "http", 3, pytest.approx(0.3), 0.5),
        SlowNode("onboarding", "ask", "question", 2, pytest.approx(0.015), 0.02),
    ]


async def test_stats_window_includes_what_it_excluded_once_widened(
    store: Store, make: Make
) -> None:
    """Widened to take the old execution in: its failed step, failed execution, long turn
    and slow node all appear (the window is the only thing that left them out)."""
    await _traffic(store, make)
    stats = await store.stats(T0 - 86400, limit=1)
    assert _by_type(stats)["message"] == (4, 1, pytest.approx((0.012 + 9.0) / 4))
    assert stats.flows[1] == FlowTurnStats("support", 2, pytest.approx(101.5), 200.0, 200.0)
    assert stats.institutions == [InstitutionErrors("acme", 2, 1), InstitutionErrors("beta", 2, 1)]
    assert stats.slowest_nodes == [
        SlowNode("support", "greet", "message", 2, pytest.approx(4.503), 9.0)
    ]


async def test_stats_filtered_by_institution(store: Store, make: Make) -> None:
    """``institution_id`` narrows every section to that institution's executions."""
    await _traffic(store, make)
    beta = await store.stats(T0 - 60, institution_id="beta")
    assert _by_type(beta) == {
        "ai": (2, 1, pytest.approx(1.5)),
        "message": (1, 0, pytest.approx(0.006)),
        "end": (1, 0, pytest.approx(0.001)),
    }
    assert beta.flows == [FlowTurnStats("support", 1, 3.0, 3.0, 3.0)]
    assert beta.institutions == [InstitutionErrors("beta", 1, 0)]
    assert {(s.flow_id, s.node_id) for s in beta.slowest_nodes} == {
        ("support", "classify"),
        ("support", "greet"),
        ("support", "bye"),
    }
    acme = await store.stats(T0 - 60, institution_id="acme")
    assert [f.flow_id for f in acme.flows] == ["onboarding"]
    assert acme.institutions == [InstitutionErrors("acme", 2, 1)]
    assert _by_type(acme)["http"] == (3, 2, pytest.approx(0.3))
    assert await store.stats(T0 - 60, institution_id="nobody") == StoreStats(
        T0 - 60, [], [], [], []
    )


async def test_stats_turn_p95_is_nearest_rank(store: Store, make: Make) -> None:
    """p95 is a turn that happened, the nearest-rank one: of twenty turns lasting 1..20 s,
    the 19th; of a hundred lasting 1..100 s, the 95th."""
    await ran(store, make, [], flow="twenty", turns=[(T0, T0 + s) for s in range(20, 0, -1)])
    await ran(store, make, [], flow="hundred", turns=[(T0, T0 + s) for s in range(1, 101)])
    stats = await store.stats(T0)
    assert stats.flows == [
        FlowTurnStats("hundred", 100, pytest.approx(50.5), 95.0, 100.0),
        FlowTurnStats("twenty", 20, pytest.approx(10.5), 19.0, 20.0),
    ]


async def test_stats_failed_executions_count_by_end_time(store: Store, make: Make) -> None:
    """A failed execution counts when it ended in the window, even with no failed step in
    it (a flow-level failure), and an institution with only that is still listed."""
    await ran(
        store,
        make,
        [Node("n", "message", 0.01, at=T0 - 600)],
        institution="gamma",
        status=S.FAILED,
        ended=T0 + 1,
    )
    await ran(store, make, [], institution="delta", status=S.COMPLETED, ended=T0 + 1)
    stats = await store.stats(T0)
    assert stats.institutions == [InstitutionErrors("gamma", 0, 1)]
    assert stats.node_types == []


# ---------------------------------------------------------------------------- purge_logs


async def test_purge_logs_removes_only_trails_of_executions_ended_before(
    store: Store, make: Make
) -> None:
    """Retention deletes the trail lines of executions that ended before the cutoff; an
    execution that ended after it, exactly at it, or is still live keeps every line, and
    the state history and checkpoints are never touched."""
    gone = await ran(store, make, [Node("n", "message", 0.01)], ended=T0 - 100)
    at_cutoff = await ran(store, make, [Node("n", "message", 0.01)], ended=T0)
    later = await ran(store, make, [Node("n", "message", 0.01)], ended=T0 + 100)
    live = await make.create(store)
    before = {ex.id: await make.trail(store, ex.id) for ex in (gone, at_cutoff, later, live)}
    assert len(before[gone.id].logs) == 2

    assert await store.purge_logs(T0) == 2
    assert await store.logs(gone.id) == []
    for ex in (at_cutoff, later, live):
        assert await make.trail(store, ex.id) == before[ex.id]
    assert await store.transitions(gone.id) == before[gone.id].transitions
    assert await store.checkpoints(gone.id) == before[gone.id].checkpoints
    assert await store.purge_logs(T0) == 0


async def test_purge_logs_respects_its_limit(store: Store, make: Make) -> None:
    """At most ``limit`` lines go per call, so retention can run in small batches that
    never hold the store for long; repeated calls finish the job."""
    ended = [await ran(store, make, [Node("n", "message", 0.01)], ended=T0 - 10) for _ in range(2)]
    keep = await ran(store, make, [Node("n", "message", 0.01)], ended=T0 + 10)

    assert await store.purge_logs(T0, limit=3) == 3
    assert sum([len(await store.logs(ex.id)) for ex in ended]) == 1
    assert await store.purge_logs(T0, limit=3) == 1
    assert await store.purge_logs(T0, limit=3) == 0
    assert len(await store.logs(keep.id)) == 2


# --------------------------------------------------------------------------------- alerts


def alert(
    status: AlertStatus,
    at: float,
    *,
    rule: str = "TrilhaErrorRateHigh",
    instance: str = "",
    value: float | None = 0.2,
) -> AlertState:
    return AlertState(
        rule=rule,
        instance=instance,
        status=status,
        severity="critical",
        value=value,
        threshold=0.05,
        summary=f"step error rate {value} over 5m (threshold 5.0%)",
        active_at=None if status in (AlertStatus.INACTIVE, AlertStatus.RESOLVED) else T0,
        fired_at=at if status is AlertStatus.FIRING else None,
        resolved_at=at if status is AlertStatus.RESOLVED else None,
        updated_at=at,
    )


def _moves(history: list[AlertState]) -> list[tuple[str, str, AlertStatus, float | None, float]]:
    return [(h.rule, h.instance, h.status, h.value, h.updated_at) for h in history]


async def test_no_alerts_yet(store: Store) -> None:
    assert await store.alerts() == []
    assert await store.alert_history() == []


async def test_save_alert_inserts_once(store: Store) -> None:
    """``expected=None`` creates the row; a second creation (another process that also
    saw no row) is refused and changes nothing."""
    pending = alert(AlertStatus.PENDING, T0)
    assert await store.save_alert(pending, expected=None) is True
    assert await store.alerts() == [pending]
    other = alert(AlertStatus.FIRING, T0 + 1, value=0.9)
    assert await store.save_alert(other, expected=None) is False
    assert await store.alerts() == [pending]
    assert _moves(await store.alert_history()) == [
        ("TrilhaErrorRateHigh", "", AlertStatus.PENDING, 0.2, T0)
    ]


async def test_save_alert_updates_only_from_the_expected_state(store: Store) -> None:
    """An update lands only if the stored state is still the one the caller read: a
    caller with a stale read (same status, older update) or no row at all is refused."""
    pending = alert(AlertStatus.PENDING, T0)
    assert await store.save_alert(alert(AlertStatus.FIRING, T0), expected=pending) is False
    assert await store.alerts() == []
    await store.save_alert(pending, expected=None)
    still = alert(AlertStatus.PENDING, T0 + 15, value=0.3)
    assert await store.save_alert(still, expected=pending) is True
    firing = alert(AlertStatus.FIRING, T0 + 60)
    assert await store.save_alert(firing, expected=pending) is False  # read before T0 + 15
    assert await store.alerts() == [still]
    assert await store.save_alert(firing, expected=still) is True
    assert await store.alerts() == [firing]


async def test_alert_history_records_state_changes_only(store: Store) -> None:
    """A new row and each change of status add a history row; re-saving the same status
    with a fresh value does not (the history is of moves, not of evaluations)."""
    states = [
        alert(AlertStatus.PENDING, T0, value=0.1),
        alert(AlertStatus.PENDING, T0 + 15, value=0.2),
        alert(AlertStatus.FIRING, T0 + 60, value=0.3),
        alert(AlertStatus.FIRING, T0 + 75, value=0.4),
        alert(AlertStatus.RESOLVED, T0 + 90, value=0.01),
        alert(AlertStatus.PENDING, T0 + 120, value=0.5),
    ]
    previous: AlertState | None = None
    for state in states:
        assert await store.save_alert(state, expected=previous) is True
        previous = state
    rule = "TrilhaErrorRateHigh"
    assert _moves(await store.alert_history()) == [
        (rule, "", AlertStatus.PENDING, 0.5, T0 + 120),
        (rule, "", AlertStatus.RESOLVED, 0.01, T0 + 90),
        (rule, "", AlertStatus.FIRING, 0.3, T0 + 60),
        (rule, "", AlertStatus.PENDING, 0.1, T0),
    ]
    assert _moves(await store.alert_history(limit=2)) == _moves(await store.alert_history())[:2]
    history = await store.alert_history()
    assert [h.summary for h in history] == [states[i].summary for i in (5, 4, 2, 0)]
    assert {(h.severity, h.threshold) for h in history} == {("critical", 0.05)}


async def test_alerts_are_kept_per_rule_and_instance(store: Store) -> None:
    """A per-host rule keeps one row per host beside the store-wide rules, each moving on
    its own; ``alerts()`` lists them by rule, then instance."""
    mem_b = alert(AlertStatus.PENDING, T0, rule="TrilhaMemoryHigh", instance="host-b")
    mem_a = alert(AlertStatus.FIRING, T0, rule="TrilhaMemoryHigh", instance="host-a")
    errors = alert(AlertStatus.PENDING, T0)
    for state in (mem_b, mem_a, errors):
        assert await store.save_alert(state, expected=None) is True
    resolved = alert(AlertStatus.RESOLVED, T0 + 5, rule="TrilhaMemoryHigh", instance="host-a")
    assert await store.save_alert(resolved, expected=mem_a) is True
    assert await store.alerts() == [errors, resolved, mem_b]
    assert [(h.instance, h.status) for h in await store.alert_history(limit=1)] == [
        ("host-a", AlertStatus.RESOLVED)
    ]


async def test_concurrent_evaluators_move_an_alert_once(backend: Backend) -> None:
    """Two processes read the same state and both try to move it: exactly one wins, so
    exactly one of them notifies."""
    first, second = await backend.open(), await backend.open()
    pending = alert(AlertStatus.PENDING, T0)
    assert await first.save_alert(pending, expected=None) is True
    seen = (await second.alerts())[0]
    results = await asyncio.gather(
        first.save_alert(alert(AlertStatus.FIRING, T0 + 60), expected=seen),
        second.save_alert(alert(AlertStatus.FIRING, T0 + 61), expected=seen),
    )
    assert sorted(results) == [False, True]
    assert len(await first.alert_history()) == 2
    winner = T0 + 60 if results[0] else T0 + 61
    assert [a.updated_at for a in await second.alerts()] == [winner]
