"""The invariant rules of ``trilha check`` (DESIGN §7), as a pure function of the records.

Each test starts from a sound set of records built by hand, as the engine would
leave them, and breaks exactly one thing, asserting the exact rule, its severity
and the words of the detail an operator reads. A rule that stopped firing, fired
under another name or fired on something sound fails a test here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from trilha.core.execution import (
    Checkpoint,
    Execution,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    Transition,
    checksum,
    dumps,
)
from trilha.core.invariants import Records, Violation, check
from trilha.core.states import ExecutionStatus, Outcome

S = ExecutionStatus

T0 = 1_800_000_000.0
EID = "ex-1"
DAY = 86_400.0

# --------------------------------------------------------------------------- builders


def execution(status: ExecutionStatus, **fields: Any) -> Execution:
    return Execution(
        id=EID,
        institution_id="inst-1",
        conversation_id="conv-1",
        contact_id="contact-1",
        flow_id="onboarding",
        flow_version=1,
        status=status,
        current_node_id=fields.pop("node", "ask"),
        variables=fields.pop("variables", {"name": "Ana"}),
        created_at=T0,
        updated_at=fields.pop("updated_at", T0 + 20),
        **fields,
    )


def checkpoint(seq: int, status: ExecutionStatus, node: str, **fields: Any) -> Checkpoint:
    state = dumps({"status": status.value, "node": node, "seq": seq})
    return Checkpoint(
        execution_id=EID,
        seq=seq,
        node_id=node,
        node_type=fields.pop("node_type", "message"),
        status=status,
        state=state,
        checksum=checksum(state),
        started_at=T0 + seq,
        duration=0.001,
        **fields,
    )


def transition(
    source: ExecutionStatus | None, target: ExecutionStatus, at: float, reason: str = "step"
) -> Transition:
    return Transition(EID, source, target, reason, at)


def outbound(seq: int, index: str = "0", text: str = "hi") -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=f"{EID}:{seq}:{index}",
        execution_id=EID,
        institution_id="inst-1",
        conversation_id="conv-1",
        contact_id="contact-1",
        channel="default",
        text=text,
        created_at=T0 + seq,
        step_seq=seq,
    )


def line(message: str, at: float = T0, **context: Any) -> LogRecord:
    return LogRecord(EID, "INFO", message, at, None, None, context)


def sent(key: str) -> LogRecord:
    return line("message.queued", idempotencyKey=key, text="hi")


def inbound(row: int, message_id: str, applied_at: float | None = None) -> InboundMessage:
    return InboundMessage(
        id=row,
        institution_id="inst-1",
        conversation_id="conv-1",
        message_id=message_id,
        contact_id="contact-1",
        text=f"text of {message_id}",
        received_at=T0 + 5 + row,
        execution_id=EID,
        applied_at=applied_at,
    )


def reply(message_id: str) -> dict[str, str]:
    """A checkpoint's input for the step that consumed ``message_id`` (as the engine
    records it)."""
    return {"messageId": message_id, "text": f"text of {message_id}"}


def completed() -> Records:
    """hello (says hi) -> ask (asks, waits) -> ask (reads m1) -> save (set) -> bye (ends)."""
    return Records(
        execution=execution(
            S.COMPLETED,
            node="bye",
            outcome=Outcome.COMPLETED,
            ended_at=T0 + 12,
            step_seq=5,
        ),
        transitions=[
            transition(None, S.RUNNING, T0, "started"),
            transition(S.RUNNING, S.WAITING_INPUT, T0 + 2, "waiting for a reply to 'ask'"),
            transition(S.WAITING_INPUT, S.RUNNING, T0 + 10, "input received"),
            transition(S.RUNNING, S.COMPLETED, T0 + 12, "reached an end"),
        ],
        checkpoints=[
            checkpoint(1, S.RUNNING, "hello"),
            checkpoint(2, S.WAITING_INPUT, "ask", node_type="question"),
            checkpoint(3, S.RUNNING, "ask", node_type="question", input=reply("m1")),
            checkpoint(4, S.RUNNING, "save", node_type="set"),
            checkpoint(5, S.COMPLETED, "bye", node_type="end"),
        ],
        outbox=[outbound(1), outbound(2), outbound(5)],
        inbox=[inbound(1, "m1", applied_at=T0 + 10)],
        logs=[
            line("execution.started", flowId="onboarding"),
            sent(f"{EID}:1:0"),
            sent(f"{EID}:2:0"),
            sent(f"{EID}:5:0"),
            line("execution.ended", status="completed"),
        ],
    )


def waiting(**fields: Any) -> Records:
    """hello (says hi) -> ask (asks): waiting for the contact's reply for a day."""
    fields.setdefault("waiting_for", "input")
    fields.setdefault("due_at", T0 + DAY)
    fields.setdefault("wake_at", T0 + DAY)
    return Records(
        execution=execution(S.WAITING_INPUT, step_seq=2, **fields),
        transitions=[
            transition(None, S.RUNNING, T0, "started"),
            transition(S.RUNNING, S.WAITING_INPUT, T0 + 2, "waiting for a reply to 'ask'"),
        ],
        checkpoints=[
            checkpoint(1, S.RUNNING, "hello"),
            checkpoint(2, S.WAITING_INPUT, "ask", node_type="question"),
        ],
        outbox=[outbound(1), outbound(2)],
        logs=[
            line("execution.started", flowId="onboarding"),
            sent(f"{EID}:1:0"),
            sent(f"{EID}:2:0"),
        ],
    )


def failed(*, final: str | None = f"{EID}:3:end") -> Records:
    """hello (says hi) -> call (fails for good): ended ``failed`` with a final notice,
    sent as step N + 1 that has no checkpoint of its own (the engine's ``_end``); with
    ``final=None`` it ended without a notice, its counter at N."""
    outbox = [outbound(1)]
    logs = [line("execution.started", flowId="onboarding"), sent(f"{EID}:1:0")]
    if final is not None:
        outbox.append(dataclasses.replace(outbound(3), idempotency_key=final))
        logs.append(sent(final))
    return Records(
        execution=execution(
            S.FAILED,
            node="call",
            outcome=Outcome.FAILED,
            ended_at=T0 + 3,
            step_seq=2 if final is None else 3,
            error={"type": "failed", "message": "node 'call' failed", "code": None},
        ),
        transitions=[
            transition(None, S.RUNNING, T0, "started"),
            transition(S.RUNNING, S.FAILED, T0 + 3, "node 'call' failed"),
        ],
        checkpoints=[
            checkpoint(1, S.RUNNING, "hello"),
            checkpoint(2, S.RUNNING, "call", node_type="http", error={"type": "NodeError"}),
        ],
        outbox=outbox,
        logs=logs,
    )


def with_execution(records: Records, **changes: Any) -> Records:
    return dataclasses.replace(records, execution=dataclasses.replace(records.execution, **changes))


def found(
    records: Records, *, now: float = T0 + 100, grace: float = 60.0
) -> list[tuple[str, str, str]]:
    """(rule, severity, detail) of every violation, in the order ``check`` gives them."""
    violations = check(records, now=now, grace=grace)
    assert all(v.execution_id == EID for v in violations), violations
    return [(v.rule, v.severity, v.detail) for v in violations]


def only(
    records: Records,
    rule: str,
    *phrases: str,
    severity: str = "error",
    now: float = T0 + 100,
    grace: float = 60.0,
) -> str:
    """Exactly one violation, of ``rule`` and ``severity``, whose detail says ``phrases``."""
    got = found(records, now=now, grace=grace)
    assert [(r, s) for r, s, _ in got] == [(rule, severity)], got
    detail = got[0][2]
    for phrase in phrases:
        assert phrase in detail, (phrase, detail)
    return detail


# --------------------------------------------------------------------------- sound records


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(completed(), id="completed"),
        pytest.param(waiting(), id="waiting_input"),
        pytest.param(failed(), id="failed with a final notice"),
        pytest.param(failed(final=None), id="failed without a final notice"),
    ],
)
def test_sound_records_break_no_rule(records: Records) -> None:
    """What the engine leaves behind passes every rule."""
    assert check(records, now=T0 + 100) == []


def test_a_sound_record_passes_when_checked_much_later() -> None:
    """An ended execution is never overdue, however old; a waiting one is not before
    its wake time."""
    assert check(completed(), now=T0 + 365 * DAY) == []
    assert check(waiting(), now=T0 + DAY - 1) == []


@pytest.mark.parametrize(
    ("status", "waiting_for"),
    [
        (S.WAITING_DELAY, "timer"),
        (S.RECOVERING, "retry"),
        (S.RECOVERING, "dependency"),
    ],
)
def test_every_named_wait_with_a_due_time_is_sound(
    status: ExecutionStatus, waiting_for: str
) -> None:
    """A delay waits for its timer; a recovering execution for a retry or a dependency."""
    records = waiting(waiting_for=waiting_for, due_at=T0 + 500, wake_at=T0 + 500)
    records = dataclasses.replace(
        with_execution(records, status=status),
        transitions=[*records.transitions[:1], transition(S.RUNNING, status, T0 + 2)],
    )
    assert check(records, now=T0 + 100) == []


def test_a_paused_execution_waiting_for_an_operator_is_sound() -> None:
    """Paused: waits for an operator (no wake time) and knows the state to resume to."""
    records = waiting()
    paused = dataclasses.replace(
        with_execution(
            records,
            status=S.PAUSED,
            paused_from=S.WAITING_INPUT,
            waiting_for="operator",
            wake_at=None,
        ),
        transitions=[*records.transitions, transition(S.WAITING_INPUT, S.PAUSED, T0 + 50)],
    )
    assert check(paused, now=T0 + 100) == []


def test_a_running_execution_due_for_a_worker_is_sound() -> None:
    """Running and due now (wake time in the past, within the grace) is fine."""
    records = dataclasses.replace(
        with_execution(waiting(), status=S.RUNNING, waiting_for=None, due_at=None, wake_at=T0 + 90),
        transitions=waiting().transitions[:1],
        checkpoints=[checkpoint(1, S.RUNNING, "hello"), checkpoint(2, S.RUNNING, "ask")],
    )
    assert check(records, now=T0 + 100) == []


def test_violation_wire_shape() -> None:
    """The JSON ``trilha check --json`` prints for one violation."""
    v = Violation(EID, "state", "it is completed with no outcome")
    assert v.severity == "error"
    assert v.wire() == {
        "executionId": EID,
        "rule": "state",
        "severity": "error",
        "detail": "it is completed with no outcome",
    }


# --------------------------------------------------------------------------- state


def test_terminal_without_an_outcome() -> None:
    only(with_execution(completed(), outcome=None), "state", "completed with no outcome")


def test_terminal_without_an_end_time() -> None:
    only(with_execution(completed(), ended_at=None), "state", "completed with no end time")


def test_terminal_with_a_wake_time() -> None:
    """Something a worker would claim, though nothing is left to do."""
    only(
        with_execution(completed(), wake_at=T0 + 50),
        "state",
        "it is completed but due for a worker",
    )


def test_terminal_breaking_all_three_reports_each() -> None:
    records = with_execution(failed(), outcome=None, ended_at=None, wake_at=T0)
    assert found(records) == [
        ("state", "error", "it is failed with no outcome"),
        ("state", "error", "it is failed with no end time"),
        ("state", "error", "it is failed but due for a worker"),
    ]


@pytest.mark.parametrize(
    "changes",
    [{"outcome": Outcome.COMPLETED}, {"ended_at": T0 + 50}],
    ids=["outcome", "end time"],
)
def test_active_with_an_outcome_or_an_end(changes: dict[str, Any]) -> None:
    only(
        with_execution(waiting(), **changes),
        "state",
        "waiting_input (active) but has an outcome or end",
    )


def test_a_lease_does_not_excuse_an_outcome_on_an_active_execution() -> None:
    records = with_execution(
        waiting(),
        outcome=Outcome.COMPLETED,
        lease_owner="w1",
        lease_expires_at=T0 + 130,
    )
    only(records, "state", "(active) but has an outcome or end")


def paused(**changes: Any) -> Records:
    records = waiting()
    fields = {
        "status": S.PAUSED,
        "paused_from": S.WAITING_INPUT,
        "waiting_for": "operator",
        "wake_at": None,
    }
    return dataclasses.replace(
        with_execution(records, **(fields | changes)),
        transitions=[*records.transitions, transition(S.WAITING_INPUT, S.PAUSED, T0 + 50)],
    )


def test_paused_without_the_state_to_resume_to() -> None:
    only(paused(paused_from=None), "state", "paused with no state to resume to")


def test_paused_waiting_for_something_else_than_an_operator() -> None:
    only(paused(waiting_for="input"), "state", "paused but waiting for 'input'")
    only(paused(waiting_for=None), "state", "paused but waiting for None")


def test_waiting_input_that_waits_for_a_timer() -> None:
    only(waiting(waiting_for="timer"), "state", "waiting_input waits for 'timer', not input")


def test_waiting_delay_that_waits_for_input() -> None:
    records = with_execution(waiting(), status=S.WAITING_DELAY)
    records = dataclasses.replace(
        records,
        transitions=[*records.transitions[:1], transition(S.RUNNING, S.WAITING_DELAY, T0 + 2)],
    )
    only(records, "state", "waiting_delay waits for 'input', not timer")


def test_recovering_that_waits_for_something_unnamed() -> None:
    records = with_execution(waiting(), status=S.RECOVERING, waiting_for=None)
    records = dataclasses.replace(
        records,
        transitions=[*records.transitions[:1], transition(S.RUNNING, S.RECOVERING, T0 + 2)],
    )
    only(records, "state", "recovering waits for None, not retry or dependency")


def test_waiting_input_without_a_due_time() -> None:
    only(waiting(due_at=None), "state", "waiting_input with no due time")


def test_waiting_input_without_a_wake_time() -> None:
    """Nothing would ever claim it: not even its input timeout would fire."""
    only(waiting(wake_at=None), "state", "waiting_input with nothing to wake it (no wake time)")


def test_waiting_input_that_wakes_after_its_due_time() -> None:
    """Its timeout would fire late: the wake time is after the due time (both ahead)."""
    only(
        waiting(due_at=T0 + 500, wake_at=T0 + 900),
        "state",
        "waiting_input wakes after its due time",
    )


def test_running_held_by_no_worker_and_not_due_is_stranded() -> None:
    records = dataclasses.replace(
        with_execution(waiting(), status=S.RUNNING, waiting_for=None, due_at=None, wake_at=None),
        transitions=waiting().transitions[:1],
    )
    only(records, "state", "running, held by no worker and not due for one: stranded")


def test_running_due_only_far_in_the_future_is_an_error_within_grace_it_is_not() -> None:
    """Nothing defers a running execution: a wake time past now + grace is an error."""

    def running(wake_at: float) -> Records:
        return dataclasses.replace(
            with_execution(
                waiting(), status=S.RUNNING, waiting_for=None, due_at=None, wake_at=wake_at
            ),
            transitions=waiting().transitions[:1],
        )

    assert check(running(T0 + 150), now=T0 + 100, grace=60) == []
    only(running(T0 + 400), "state", "running but not due for a worker for 300 s")


@pytest.mark.parametrize("status", [S.FALLBACK, S.DEGRADED])
def test_other_active_states_not_held_and_not_due_are_stranded(status: ExecutionStatus) -> None:
    records = dataclasses.replace(
        with_execution(waiting(), status=status, waiting_for=None, due_at=None, wake_at=None),
        transitions=[*waiting().transitions[:1], transition(S.RUNNING, status, T0 + 2)],
    )
    only(records, "state", f"{status.value}, held by no worker", "stranded")


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(waiting(wake_at=None), id="waiting_input without wake time"),
        pytest.param(waiting(due_at=None, waiting_for=None), id="waiting_input unnamed"),
        pytest.param(
            dataclasses.replace(
                with_execution(waiting(), status=S.RUNNING, waiting_for=None, wake_at=None),
                transitions=waiting().transitions[:1],
            ),
            id="running without wake time",
        ),
    ],
)
def test_a_live_lease_excuses_the_wait_checks(records: Records) -> None:
    """A worker holds it: whatever it waited on, it is being moved now. When the lease
    has expired, the same records are reported."""
    now = T0 + 100
    held = with_execution(records, lease_owner="w1", lease_expires_at=now + 30)
    assert check(held, now=now) == []
    at_expiry = with_execution(records, lease_owner="w1", lease_expires_at=now)
    assert check(at_expiry, now=now) == []
    expired = with_execution(records, lease_owner="w1", lease_expires_at=now - 0.001)
    reported = check(expired, now=now)
    assert reported
    assert {(v.rule, v.severity) for v in reported} == {("state", "error")}


def test_a_lease_owner_without_an_expiry_is_no_lease() -> None:
    records = with_execution(waiting(wake_at=None), lease_owner="w1", lease_expires_at=None)
    only(records, "state", "nothing to wake it")


# --------------------------------------------------------------------------- overdue


def test_overdue_is_a_warning_only_past_the_grace() -> None:
    """Due 61 s ago with a 60 s grace: a warning; 59 s ago: nothing."""
    records = waiting(wake_at=T0 + 100, due_at=T0 + DAY)
    assert check(records, now=T0 + 159) == []
    detail = only(records, "overdue", severity="warning", now=T0 + 161)
    assert detail == "due 61 s ago and no worker holds it"


def test_overdue_honours_the_grace_given() -> None:
    records = waiting(wake_at=T0 + 100)
    assert check(records, now=T0 + 130, grace=60) == []
    only(records, "overdue", "due 30 s ago", severity="warning", now=T0 + 130, grace=10)
    assert check(records, now=T0 + 1000, grace=5000) == []


def test_overdue_is_not_reported_while_a_worker_holds_it() -> None:
    records = with_execution(
        waiting(wake_at=T0 + 100), lease_owner="w1", lease_expires_at=T0 + 5000
    )
    assert check(records, now=T0 + 1000) == []


def test_overdue_comes_after_the_errors() -> None:
    """Errors first (in rule order), warnings last."""
    records = waiting(wake_at=T0 + 100, waiting_for="timer")
    records = dataclasses.replace(records, transitions=[])
    got = found(records, now=T0 + 1000)
    assert [(r, s) for r, s, _ in got] == [
        ("state", "error"),
        ("history", "error"),
        ("overdue", "warning"),
    ]
    assert got[2][2] == "due 900 s ago and no worker holds it"


# --------------------------------------------------------------------------- history


def test_no_history_at_all() -> None:
    records = dataclasses.replace(completed(), transitions=[])
    assert found(records) == [("history", "error", "no state history at all")]


def test_history_not_starting_at_running() -> None:
    """The birth (new -> running) is missing: it starts at a later change."""
    records = dataclasses.replace(waiting(), transitions=waiting().transitions[1:])
    only(records, "history", "starts running -> waiting_input")


def test_history_born_in_another_state() -> None:
    records = dataclasses.replace(waiting(), transitions=[transition(None, S.WAITING_INPUT, T0)])
    assert found(records) == [
        ("history", "error", "starts new -> waiting_input"),
        ("history", "error", "new -> waiting_input is not in the table"),
    ]


def test_a_broken_chain() -> None:
    """A change is missing in the middle: the next one starts where no change ended."""
    history = list(completed().transitions)
    del history[2]  # waiting_input -> running
    detail = only(
        dataclasses.replace(completed(), transitions=history),
        "history",
        "a change from running follows one that ended in waiting_input",
    )
    assert f"(at {T0 + 12:.3f})" in detail


def test_a_change_not_in_the_table() -> None:
    """completed -> running: nothing leaves a terminal state."""
    records = Records(
        execution=execution(S.RUNNING, wake_at=T0 + 90),
        transitions=[
            transition(None, S.RUNNING, T0),
            transition(S.RUNNING, S.COMPLETED, T0 + 1),
            transition(S.COMPLETED, S.RUNNING, T0 + 2),
        ],
    )
    only(records, "history", "completed -> running is not in the table")


def test_paused_to_recovering_is_not_in_the_table() -> None:
    """Resume returns to a wait or to running, never to recovering."""
    records = paused()
    records = dataclasses.replace(
        with_execution(
            records, status=S.RECOVERING, waiting_for="retry", wake_at=T0 + 90, paused_from=None
        ),
        transitions=[*records.transitions, transition(S.PAUSED, S.RECOVERING, T0 + 60)],
    )
    only(records, "history", "paused -> recovering is not in the table")


def test_the_last_change_does_not_end_in_the_current_state() -> None:
    records = dataclasses.replace(completed(), transitions=completed().transitions[:3])
    only(
        records,
        "history",
        "the last change ends in running, the execution is completed",
    )


def test_time_going_back() -> None:
    history = list(completed().transitions)
    history[2] = dataclasses.replace(history[2], at=T0 + 1)  # before the change it follows
    only(
        dataclasses.replace(completed(), transitions=history),
        "history",
        "goes back in time at waiting_input -> running",
    )


def test_equal_times_are_not_going_back() -> None:
    """Two changes in one commit may share a timestamp."""
    history = [dataclasses.replace(t, at=T0) for t in completed().transitions]
    assert check(dataclasses.replace(completed(), transitions=history), now=T0 + 100) == []


# --------------------------------------------------------------------------- checkpoints


def test_a_gap_in_the_numbering() -> None:
    """Step 4 is gone: reported as missing, and the counter (5) no longer matches 4 rows."""
    records = completed()
    gapped = dataclasses.replace(
        records, checkpoints=[c for c in records.checkpoints if c.seq != 4]
    )
    assert found(gapped) == [
        ("checkpoints", "error", "steps missing from the numbering: [4]"),
        ("checkpoints", "error", "step 5 has no checkpoint"),
    ]


def test_several_gaps_are_listed_in_order() -> None:
    records = completed()
    gapped = dataclasses.replace(
        records,
        checkpoints=[c for c in records.checkpoints if c.seq in (1, 4, 5)],
        outbox=[outbound(1), outbound(5)],
        logs=[r for r in records.logs if r.context.get("idempotencyKey") != f"{EID}:2:0"],
        inbox=[],
    )
    details = [d for r, _, d in found(gapped) if r == "checkpoints"]
    assert details[0] == "steps missing from the numbering: [2, 3]"


def test_a_checkpoint_that_fails_its_checksum() -> None:
    records = completed()
    cps = list(records.checkpoints)
    cps[3] = dataclasses.replace(cps[3], checksum="0" * 32)
    only(dataclasses.replace(records, checkpoints=cps), "checkpoints", "step 4 fails its checksum")


def test_a_damaged_checkpoint_recovery_set_aside_is_a_warning() -> None:
    """Recovery walked back past it and quarantined a copy: a handled fault, not an
    inconsistency; the same damage unnoticed by recovery stays an error."""
    records = completed()
    cps = list(records.checkpoints)
    cps[3] = dataclasses.replace(cps[3], state="garbage")
    damaged = dataclasses.replace(records, checkpoints=cps)
    only(
        dataclasses.replace(damaged, quarantined_steps=frozenset({4})),
        "checkpoints",
        "step 4 fails its checksum (set aside by recovery)",
        severity="warning",
    )
    only(
        dataclasses.replace(damaged, quarantined_steps=frozenset({2})),
        "checkpoints",
        "step 4 fails its checksum",
    )


def test_a_checkpoint_whose_state_was_changed_behind_its_checksum() -> None:
    records = completed()
    cps = list(records.checkpoints)
    cps[1] = dataclasses.replace(cps[1], state=cps[1].state.replace("ask", "ghost"))
    only(dataclasses.replace(records, checkpoints=cps), "checkpoints", "step 2 fails its checksum")


@pytest.mark.parametrize("step_seq", [1, 3, 7])
def test_the_step_counter_disagrees_with_the_checkpoints(step_seq: int) -> None:
    """An active execution's counter is exactly N (no N + 1: only an ended one has a
    final notice)."""
    only(
        with_execution(waiting(), step_seq=step_seq),
        "checkpoints",
        f"the step counter is {step_seq} with 2 checkpoints",
    )


def test_n_plus_one_needs_the_final_notice() -> None:
    """An ended execution at step N + 1 without its ``:end`` message lost a step."""
    records = failed()
    without = dataclasses.replace(
        records,
        outbox=[m for m in records.outbox if not m.idempotency_key.endswith(":end")],
        logs=[r for r in records.logs if r.context.get("idempotencyKey") != f"{EID}:3:end"],
    )
    only(without, "checkpoints", "step 3 has no checkpoint")


def test_n_plus_one_with_a_final_notice_of_another_step() -> None:
    """The ``:end`` message must be the one of step N + 1."""
    records = failed(final=f"{EID}:2:end")
    assert found(records) == [
        ("checkpoints", "error", "step 3 has no checkpoint"),
        ("outbox", "error", f"final notice {EID}:2:end is not at the last step ({EID}:3:end)"),
    ]


def test_n_plus_one_on_an_active_execution_even_with_a_final_notice() -> None:
    records = waiting()
    bad = dataclasses.replace(
        with_execution(records, step_seq=3),
        outbox=[*records.outbox, dataclasses.replace(outbound(3), idempotency_key=f"{EID}:3:end")],
        logs=[*records.logs, sent(f"{EID}:3:end")],
    )
    assert found(bad) == [
        ("checkpoints", "error", "the step counter is 3 with 2 checkpoints"),
        ("outbox", "error", f"final notice {EID}:3:end of an active one"),
    ]


def test_n_plus_two_is_never_allowed() -> None:
    records = failed()
    assert found(with_execution(records, step_seq=4)) == [
        ("checkpoints", "error", "the step counter is 4 with 2 checkpoints"),
        ("outbox", "error", f"final notice {EID}:3:end is not at the last step ({EID}:4:end)"),
    ]


def test_an_execution_with_no_step_yet_is_sound() -> None:
    """Just started: no checkpoint and a counter of 0."""
    records = Records(
        execution=execution(S.RUNNING, node="hello", wake_at=T0),
        transitions=[transition(None, S.RUNNING, T0, "started")],
        logs=[line("execution.started")],
    )
    assert check(records, now=T0 + 1) == []


# --------------------------------------------------------------------------- outbox


def test_a_message_twice_in_the_outbox() -> None:
    records = completed()
    doubled = dataclasses.replace(records, outbox=[*records.outbox, outbound(2)])
    only(doubled, "outbox", f"message {EID}:2:0 is in the outbox 2 times")


def test_a_message_of_a_step_never_committed() -> None:
    records = completed()
    extra = dataclasses.replace(
        records, outbox=[*records.outbox, outbound(9)], logs=[*records.logs, sent(f"{EID}:9:0")]
    )
    only(extra, "outbox", f"message {EID}:9:0 belongs to step 9, never committed")


def test_a_final_notice_of_an_active_execution() -> None:
    records = waiting()
    notice = dataclasses.replace(outbound(2, "end"), step_seq=2)
    bad = dataclasses.replace(
        records, outbox=[*records.outbox, notice], logs=[*records.logs, sent(f"{EID}:2:end")]
    )
    only(bad, "outbox", f"final notice {EID}:2:end of an active one")


def test_a_message_the_trail_sent_but_the_outbox_lost() -> None:
    records = completed()
    lost = dataclasses.replace(
        records, outbox=[m for m in records.outbox if m.idempotency_key != f"{EID}:2:0"]
    )
    only(lost, "outbox", f"message {EID}:2:0 was sent by a step but is missing")


def test_a_message_in_the_outbox_no_step_sent() -> None:
    records = completed()
    unsaid = dataclasses.replace(
        records, logs=[r for r in records.logs if r.context.get("idempotencyKey") != f"{EID}:5:0"]
    )
    only(unsaid, "outbox", f"message {EID}:5:0 is in the outbox but no step sent it")


def test_a_message_the_trail_says_was_sent_twice() -> None:
    records = completed()
    twice = dataclasses.replace(records, logs=[*records.logs, sent(f"{EID}:1:0")])
    only(twice, "outbox", f"message {EID}:1:0 was sent 2 times by steps")


def test_the_final_notice_needs_its_trail_line_too() -> None:
    records = failed()
    bad = dataclasses.replace(
        records, logs=[r for r in records.logs if r.context.get("idempotencyKey") != f"{EID}:3:end"]
    )
    only(bad, "outbox", f"message {EID}:3:end is in the outbox but no step sent it")


def test_trail_checks_are_skipped_without_an_execution_started_line() -> None:
    """A purged trail (or one stored above INFO) cannot tell lost messages: only the
    outbox's own checks run."""
    records = completed()
    purged = dataclasses.replace(records, logs=[])
    assert check(purged, now=T0 + 100) == []
    partial = dataclasses.replace(
        records,
        logs=[sent(f"{EID}:7:0"), sent(f"{EID}:1:0"), sent(f"{EID}:1:0")],
        outbox=[m for m in records.outbox if m.idempotency_key != f"{EID}:2:0"],
    )
    assert check(partial, now=T0 + 100) == []
    # ... but the same records with the start line are reported
    kept = dataclasses.replace(partial, logs=[line("execution.started"), *partial.logs])
    assert found(kept) == [
        ("outbox", "error", f"message {EID}:7:0 was sent by a step but is missing"),
        ("outbox", "error", f"message {EID}:5:0 is in the outbox but no step sent it"),
        ("outbox", "error", f"message {EID}:1:0 was sent 2 times by steps"),
    ]


def test_without_the_trail_the_outbox_own_checks_still_run() -> None:
    records = completed()
    bad = dataclasses.replace(records, logs=[], outbox=[*records.outbox, outbound(9), outbound(1)])
    assert found(bad) == [
        ("outbox", "error", f"message {EID}:1:0 is in the outbox 2 times"),
        ("outbox", "error", f"message {EID}:9:0 belongs to step 9, never committed"),
    ]


# --------------------------------------------------------------------------- inbox


def test_a_later_message_applied_before_an_earlier_one() -> None:
    """m1 arrived first but m2 was applied: m1 was skipped."""
    records = completed()
    cps = list(records.checkpoints)
    cps[2] = dataclasses.replace(cps[2], input=reply("m2"))
    skipped = dataclasses.replace(
        records,
        checkpoints=cps,
        inbox=[inbound(1, "m1"), inbound(2, "m2", applied_at=T0 + 10)],
    )
    only(skipped, "inbox", "message m1 was skipped: a later one was applied first")


def test_messages_applied_out_of_the_order_they_arrived() -> None:
    """m1 arrived first but was read by a later step than m2."""
    records = completed()
    cps = list(records.checkpoints)
    cps[2] = dataclasses.replace(cps[2], input=reply("m2"))
    cps[3] = dataclasses.replace(cps[3], input=reply("m1"))
    swapped = dataclasses.replace(
        records,
        checkpoints=cps,
        inbox=[inbound(1, "m1", applied_at=T0 + 11), inbound(2, "m2", applied_at=T0 + 10)],
    )
    only(swapped, "inbox", "messages were applied out of the order they arrived")


def test_messages_applied_in_order_are_sound() -> None:
    records = completed()
    cps = list(records.checkpoints)
    cps[3] = dataclasses.replace(cps[3], input=reply("m2"))
    ordered = dataclasses.replace(
        records,
        checkpoints=cps,
        inbox=[inbound(2, "m2", applied_at=T0 + 11), inbound(1, "m1", applied_at=T0 + 10)],
    )
    assert check(ordered, now=T0 + 100) == []


def test_a_message_marked_applied_that_no_step_read() -> None:
    records = completed()
    extra = dataclasses.replace(
        records, inbox=[*records.inbox, inbound(2, "m2", applied_at=T0 + 11)]
    )
    only(extra, "inbox", "message m2 is marked applied but no step read it")


def test_a_step_input_without_a_message_id_does_not_apply_a_message() -> None:
    records = completed()
    cps = list(records.checkpoints)
    cps[2] = dataclasses.replace(cps[2], input={"text": "text of m1"})
    only(
        dataclasses.replace(records, checkpoints=cps),
        "inbox",
        "message m1 is marked applied but no step read it",
    )


def test_a_pending_reply_to_an_execution_not_due_is_stranded() -> None:
    """Waiting for input, a reply not applied, and nothing wakes it before its timeout."""
    records = dataclasses.replace(waiting(wake_at=T0 + DAY), inbox=[inbound(1, "m1")])
    only(
        records,
        "inbox",
        "message m1 waits to be applied but the execution is not due: the reply is stranded",
    )


@pytest.mark.parametrize("wake", [T0 + 50, T0 + 100])
def test_a_pending_reply_to_an_execution_due_now_is_fine(wake: float) -> None:
    """deliver_inbound moved the wake time to now: a worker applies it next."""
    records = dataclasses.replace(waiting(wake_at=wake), inbox=[inbound(1, "m1")])
    assert check(records, now=T0 + 100) == []


def test_a_pending_reply_without_a_wake_time_is_stranded_and_unwakeable() -> None:
    records = dataclasses.replace(waiting(wake_at=None), inbox=[inbound(1, "m1")])
    assert [(r, s) for r, s, _ in found(records)] == [("state", "error"), ("inbox", "error")]


def test_a_pending_reply_only_strands_an_execution_waiting_for_input() -> None:
    """Paused (the operator resumes it) or on a timer (the next question applies it):
    the reply is kept, not stranded."""
    on_pause = dataclasses.replace(paused(), inbox=[inbound(1, "m1")])
    assert check(on_pause, now=T0 + 100) == []
    delay = with_execution(waiting(), status=S.WAITING_DELAY, waiting_for="timer")
    delay = dataclasses.replace(
        delay,
        transitions=[*delay.transitions[:1], transition(S.RUNNING, S.WAITING_DELAY, T0 + 2)],
        inbox=[inbound(1, "m1")],
    )
    assert check(delay, now=T0 + 100) == []


# ------------------------------------------------------- waits past their due time, final notices

# The engine itself writes a waiting_input row whose wake time is past its (already
# passed) due time: an operator's resume after the input timeout passed while paused
# (engine/operator.py ``_resume``: ``wake_at = now`` when ``due_at < now``), and the
# sweeper rescheduling a stranded waiting_input (engine/sweeper.py ``_wake_time``
# returns ``now`` for waiting_input). Both are due now: the next claim times it out.


def test_a_wait_whose_due_time_passed_and_is_due_now_is_sound() -> None:
    records = waiting(due_at=T0 + 50, wake_at=T0 + 90)
    assert check(records, now=T0 + 100) == []


def test_a_second_final_notice_is_reported() -> None:
    """Only one final notice, the one of step N + 1, may lack a checkpoint."""
    records = failed()
    extra = dataclasses.replace(outbound(9, "end"), step_seq=9)
    bad = dataclasses.replace(
        records, outbox=[*records.outbox, extra], logs=[*records.logs, sent(f"{EID}:9:end")]
    )
    assert [r for r, _, _ in found(bad)] == ["outbox"]


def delivery(message: str, key: str) -> LogRecord:
    return line(message, idempotencyKey=key)


def test_the_trails_last_delivery_word_agrees_with_the_outbox() -> None:
    """delivered -> sent, dead -> dead, redriven -> pending: a redrive after a death is
    the last word until the next attempt says otherwise."""
    records = completed()
    key = f"{EID}:1:0"
    sent_one = [
        dataclasses.replace(m, status="sent") if m.idempotency_key == key else m
        for m in records.outbox
    ]
    told = dataclasses.replace(
        records, outbox=sent_one, logs=[*records.logs, delivery("message.delivered", key)]
    )
    assert found(told) == []
    redriven = dataclasses.replace(
        records,
        outbox=[
            dataclasses.replace(m, status="pending") if m.idempotency_key == key else m
            for m in records.outbox
        ],
        logs=[*records.logs, delivery("message.dead", key), delivery("message.redriven", key)],
    )
    assert found(redriven) == []
    # delivered, then failed by a status (131047) and queued again as its template
    resent = dataclasses.replace(
        redriven,
        logs=[
            *records.logs,
            delivery("message.delivered", key),
            delivery("message.resent_as_template", key),
        ],
    )
    assert found(resent) == []
    assert found(dataclasses.replace(resent, outbox=sent_one)) != []


def test_a_message_told_delivered_that_the_outbox_holds_as_dead() -> None:
    records = completed()
    key = f"{EID}:2:0"
    dead = dataclasses.replace(
        records,
        outbox=[
            dataclasses.replace(m, status="dead") if m.idempotency_key == key else m
            for m in records.outbox
        ],
        logs=[*records.logs, delivery("message.delivered", key)],
    )
    only(dead, "outbox", f"message {key} is dead in the outbox", "last word is message.delivered")
