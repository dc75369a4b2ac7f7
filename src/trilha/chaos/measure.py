"""The eight validation criteria, measured from what a run left in the store and logs.

Nothing here trusts the harness's own bookkeeping: a fault counts when the
store shows it (a failed step, a restore from a corrupted row, a lease taken
over) or the process log says it (the store was away); recovery is read off the
trail and the state history; consistency is the invariant checker's verdict;
a trace is complete when the trail alone tells the story the store holds.

| # | criterion | required | target |
|---|---|---|---|
| 1 | transient errors recovered without a person | >= 90 % | >= 99.9 % |
| 2 | executions left permanently inconsistent | none | none |
| 3 | executions whose logs allow a full trace | all | all |
| 4 | time from a common fault to recovery | < 30 s | p99 < 2 s |
| 5 | escalation to a human | < 1 % | < 0.1 % |
| 6 | basic path with half the dependencies down | kept: >= 90 % | >= 99 % |
| 7 | good inputs served while a dependency fails others | >= 99 % | 100 % |
| 8 | failing inputs take their fallback, no person | all | all |

Criteria 7 and 8 are the partial failure's (issue 22): a dependency answering 500 to
a share of its inputs must not take the others down with them. An execution's input is
judged by the requests its steps record (``request`` in a failed step's error) against
the scenario's :class:`~trilha.chaos.scenarios.InputFailures`, the same pure function
the stand-in answered by; a call that went through was, by that function, a good one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trilha.chaos.scenarios import InputFailures
from trilha.core.execution import Checkpoint, Transition
from trilha.core.percentiles import percentile
from trilha.core.policies import TRANSIENT, classify
from trilha.core.states import ExecutionStatus, Outcome
from trilha.observability.checker import check_execution
from trilha.observability.trace import trace_problems
from trilha.store.base import Store

#: the criteria: id, name, required, target (as the report shows them)
CRITERIA: tuple[tuple[int, str, str, str], ...] = (
    (1, "transient errors recovered without a person", ">= 90 %", ">= 99.9 %"),
    (2, "executions left permanently inconsistent", "none", "none"),
    (3, "executions whose logs allow a full trace", "all", "all"),
    (4, "time from a common fault to recovery", "< 30 s", "p99 < 2 s"),
    (5, "escalation to a human", "< 1 %", "< 0.1 %"),
    (6, "basic path kept with half the dependencies down", ">= 90 %", ">= 99 %"),
    (7, "good inputs served while a dependency fails others", ">= 99 %", "100 %"),
    (8, "failing inputs take their fallback, no person", "all", "all"),
)

#: the states an execution is back to health in after a fault
_HEALTHY = frozenset(
    {ExecutionStatus.WAITING_INPUT, ExecutionStatus.WAITING_DELAY, ExecutionStatus.COMPLETED}
)
#: who moves an execution by itself; any other actor after the start is a person
ENGINE_ACTOR = "engine"


@dataclass(slots=True)
class Measures:
    """What one scenario (or all of them together) measured."""

    executions: int = 0
    #: transient faults met (failed steps, restores, takeovers) and how many of them
    #: belong to executions that ended well without a person
    faults: int = 0
    recovered: int = 0
    #: executions with an error-severity invariant violation, and the violations
    inconsistent: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    #: executions whose trail does not tell their whole story, with the first problem
    untraceable: int = 0
    trace_problems: list[dict[str, str]] = field(default_factory=list)
    #: seconds from a fault to the next step that went through
    recovery_seconds: list[float] = field(default_factory=list)
    escalated: int = 0
    #: executions that reached a good end (completed, not escalated)
    basic_path: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    #: with a dependency failing some inputs: executions that called it with good ones,
    #: and those of them that ended well without taking the node's fallback...
    good_inputs: int = 0
    good_served: int = 0
    #: ...executions that called it with a failing one, and those of them that took the
    #: node's fallback and ended well without a person
    bad_inputs: int = 0
    bad_fell_back: int = 0

    def add(self, other: Measures) -> None:
        self.executions += other.executions
        self.faults += other.faults
        self.recovered += other.recovered
        self.inconsistent += other.inconsistent
        self.violations += other.violations[: max(0, 50 - len(self.violations))]
        self.untraceable += other.untraceable
        self.trace_problems += other.trace_problems[: max(0, 50 - len(self.trace_problems))]
        self.recovery_seconds += other.recovery_seconds
        self.escalated += other.escalated
        self.basic_path += other.basic_path
        self.good_inputs += other.good_inputs
        self.good_served += other.good_served
        self.bad_inputs += other.bad_inputs
        self.bad_fell_back += other.bad_fell_back
        for key, n in other.outcomes.items():
            self.outcomes[key] = self.outcomes.get(key, 0) + n


def _transient(error: Any) -> bool:
    if not isinstance(error, dict):
        return False
    raw = error.get("details")
    details: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = classify(
        str(error.get("type") or ""),
        status=details.get("status") if isinstance(details.get("status"), int) else None,
        kind=details.get("kind") if isinstance(details.get("kind"), str) else None,
    )
    return kind in TRANSIENT


@dataclass(frozen=True, slots=True)
class FailingInputs:
    """What criteria 7 and 8 are judged by: the inputs a dependency fails, the run's
    seed, and the nodes (ids) that call that dependency."""

    failures: InputFailures
    seed: int
    nodes: frozenset[str]

    def failed(self, error: Mapping[str, Any]) -> bool:
        """Whether a failed step's request is one the dependency fails by input."""
        details = error.get("details")
        request = details.get("request") if isinstance(details, dict) else None
        if not isinstance(request, str) or " " not in request:
            return False
        method, url = request.split(" ", 1)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.failures.fails(self.seed, method, path)

    def judge(
        self,
        m: Measures,
        checkpoints: Sequence[Checkpoint],
        transitions: Sequence[Transition],
        good_end: bool,
    ) -> None:
        """Count one execution into criteria 7 and 8 (not at all if it never called)."""
        calls = [c for c in checkpoints if c.node_id in self.nodes]
        if not calls:
            return
        fell_back = any(
            t.node_id in self.nodes
            and t.target in (ExecutionStatus.FALLBACK, ExecutionStatus.DEGRADED)
            for t in transitions
        )
        if any(c.error and self.failed(c.error) for c in calls):
            m.bad_inputs += 1
            m.bad_fell_back += fell_back and good_end
        else:
            m.good_inputs += 1
            m.good_served += good_end and not fell_back


async def measure(
    store: Store,
    execution_ids: Sequence[str],
    *,
    now: float,
    grace: float = 60.0,
    inputs: FailingInputs | None = None,
) -> Measures:
    """Every criterion's raw figures for these executions (7 and 8 given ``inputs``)."""
    m = Measures(executions=len(execution_ids))
    for execution_id in execution_ids:
        violations = await check_execution(store, execution_id, now=now, grace=grace) or []
        errors = [v for v in violations if v.severity == "error"]
        if errors:
            m.inconsistent += 1
            m.violations += [
                {
                    "executionId": v.execution_id,
                    "rule": v.rule,
                    "detail": v.detail,
                    "severity": v.severity,
                }
                for v in errors
            ][: max(0, 50 - len(m.violations))]
        try:
            problems = await trace_problems(store, execution_id)
        except Exception as exc:  # a trail that cannot even be read is not traceable
            problems = [f"trail: {type(exc).__name__}: {exc}"]
        if problems:
            m.untraceable += 1
            if len(m.trace_problems) < 50:
                m.trace_problems.append({"executionId": execution_id, "problem": problems[0]})
        try:
            ex = await store.get_execution(execution_id)
        except Exception:
            m.outcomes["unreadable"] = m.outcomes.get("unreadable", 0) + 1
            continue
        transitions = await store.transitions(execution_id)
        checkpoints = await store.checkpoints(execution_id)
        logs = await store.logs(execution_id)
        by_hand = any(t.actor != ENGINE_ACTOR and t.source is not None for t in transitions)
        good_end = (
            ex.status is ExecutionStatus.COMPLETED
            and ex.outcome is Outcome.COMPLETED
            and not by_hand
        )
        outcome = "escalated" if ex.outcome is Outcome.ESCALATED else ex.status.value
        if not ex.status.terminal:
            outcome = "unfinished"
        m.outcomes[outcome] = m.outcomes.get(outcome, 0) + 1
        m.escalated += ex.outcome is Outcome.ESCALATED
        m.basic_path += good_end
        if inputs is not None:
            inputs.judge(m, checkpoints, transitions, good_end)
        # healthy again: waiting for the contact or a timer, or completed (an execution
        # that failed, timed out or was cancelled did not recover)
        healthy = [
            t.at
            for t in transitions
            if t.target
            in (
                ExecutionStatus.WAITING_INPUT,
                ExecutionStatus.WAITING_DELAY,
                ExecutionStatus.COMPLETED,
            )
        ]
        went_through = [(c.seq, c.started_at + c.duration) for c in checkpoints if not c.error]
        # a failed step recovers at the next step that went through (later in the
        # numbering: pure steps share an instant) or the next healthy state after it
        recoveries: list[float] = []
        failed = [c for c in checkpoints if c.error and _transient(c.error)]
        for c in failed:
            at = c.started_at + c.duration
            later = [end for seq, end in went_through if seq > c.seq]
            later += [h for h in healthy if h > at]
            if later:
                recoveries.append(min(later) - at)
        # a restore or a takeover recovers at the next healthy state or step from then
        # (a restore puts the execution back to waiting in the same instant)
        # (one corruption is told twice: the store set the row aside, the engine restored)
        marks = sorted({r.at for r in logs if r.message == "execution.corrupted"})
        previous: float | None = None
        for record in logs:
            if record.message == "execution.taken_over" and previous is not None:
                marks.append(previous)  # the last sign of life before the takeover
            previous = record.at
        for at in marks:
            later = [end for _, end in went_through if end >= at] + [h for h in healthy if h >= at]
            if later:
                recoveries.append(min(later) - at)
        m.faults += len(failed) + len(marks)
        m.recovered += len(failed) + len(marks) if good_end else 0
        m.recovery_seconds += recoveries
    return m


async def fell_back(store: Store, execution_ids: Sequence[str], nodes: frozenset[str]) -> int:
    """Executions that left one of ``nodes`` by its fallback (``fallback`` or
    ``degraded``): a flaky dependency's calls given up on."""
    count = 0
    for execution_id in execution_ids:
        transitions = await store.transitions(execution_id)
        count += any(
            t.node_id in nodes and t.target in (ExecutionStatus.FALLBACK, ExecutionStatus.DEGRADED)
            for t in transitions
        )
    return count


def breaker_openings(process_log: Iterable[dict[str, Any]], dependency: str) -> int:
    """How many times the process log says ``dependency``'s breaker opened."""
    return sum(
        1
        for line in process_log
        if line.get("message") == "breaker.opened"
        and ((line.get("context") or {}).get("metadata") or {}).get("dependency") == dependency
    )


def outage_recoveries(process_log: Iterable[dict[str, Any]]) -> list[float]:
    """How long each store outage lasted for the processes that met it (their
    ``store.available`` lines)."""
    found: list[float] = []
    for line in process_log:
        if line.get("message") != "store.available":
            continue
        down = (line.get("context") or {}).get("metadata", {}).get("downSeconds")
        if isinstance(down, int | float):
            found.append(float(down))
    return found


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def verdicts(
    m: Measures, basic: Measures | None, partial: Measures | None = None
) -> list[dict[str, Any]]:
    """The criteria from ``m`` (criterion 6 from ``basic``, the half-dependencies
    scenario, 7 and 8 from ``partial``, the partial failure's, when they ran): measured
    value, its display, and pass / target / fail."""
    out: list[dict[str, Any]] = []

    def add(cid: int, measured: float | None, verdict: str, display: str, detail: str) -> None:
        _, name, required, target = CRITERIA[cid - 1]
        out.append(
            {
                "id": cid,
                "name": name,
                "required": required,
                "target": target,
                "measured": measured,
                "display": display,
                "verdict": verdict,
                "detail": detail,
            }
        )

    recovered = _share(m.recovered, m.faults)
    add(
        1,
        recovered,
        "n/a"
        if recovered is None
        else "target"
        if recovered >= 0.999
        else "pass"
        if recovered >= 0.9
        else "fail",
        _pct(recovered),
        f"{m.recovered:,} of {m.faults:,} transient faults, in executions that ended well"
        " with no operator",
    )
    add(
        2,
        float(m.inconsistent),
        "target" if m.inconsistent == 0 else "fail",
        f"{m.inconsistent:,}",
        f"{m.inconsistent:,} of {m.executions:,} executions break an invariant (trilha check)",
    )
    traced = _share(m.executions - m.untraceable, m.executions)
    add(
        3,
        traced,
        "target" if m.untraceable == 0 else "fail",
        _pct(traced),
        f"{m.executions - m.untraceable:,} of {m.executions:,} trails tell the whole story",
    )
    values = m.recovery_seconds
    p99 = percentile(values, 0.99) if values else None
    worst = max(values) if values else None
    add(
        4,
        p99,
        "n/a"
        if p99 is None or worst is None
        else "target"
        if p99 < 2.0 and worst < 30.0
        else "pass"
        if worst < 30.0
        else "fail",
        "n/a" if p99 is None else f"p99 {p99:.2f} s",
        "no fault to recover from"
        if p99 is None
        else f"{len(values):,} recoveries: p50 {percentile(values, 0.5):.2f} s, max {worst:.2f} s",
    )
    escalation = _share(m.escalated, m.executions)
    add(
        5,
        escalation,
        "n/a"
        if escalation is None
        else "target"
        if escalation < 0.001
        else "pass"
        if escalation < 0.01
        else "fail",
        _pct(escalation, 3),
        f"{m.escalated:,} of {m.executions:,} executions handed to a person",
    )
    if basic is not None:
        kept = _share(basic.basic_path, basic.executions)
        add(
            6,
            kept,
            "n/a"
            if kept is None
            else "target"
            if kept >= 0.99
            else "pass"
            if kept >= 0.9
            else "fail",
            _pct(kept),
            f"{basic.basic_path:,} of {basic.executions:,} executions completed their basic"
            " path with half the dependencies down",
        )
    if partial is not None:
        served = _share(partial.good_served, partial.good_inputs)
        add(
            7,
            served,
            "n/a"
            if served is None
            else "target"
            if served == 1
            else "pass"
            if served >= 0.99
            else "fail",
            _pct(served),
            f"{partial.good_served:,} of {partial.good_inputs:,} executions whose inputs the"
            " dependency serves ended well without its fallback or a person",
        )
        fell_back = _share(partial.bad_fell_back, partial.bad_inputs)
        add(
            8,
            fell_back,
            "n/a" if fell_back is None else "target" if fell_back == 1 else "fail",
            _pct(fell_back),
            f"{partial.bad_fell_back:,} of {partial.bad_inputs:,} executions whose input the"
            " dependency fails took the node's fallback and ended without a person",
        )
    return out
