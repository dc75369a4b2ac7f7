"""Which operator controls an execution allows, and why not: every state times every
operation, the retry lease rule, and a read-only caller."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.controls import OPERATIONS, Control, controls, refusal, resume_target, target
from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus

S = ExecutionStatus
NOW = 1_800_000_000.0

ACTIVE = [S.RUNNING, S.WAITING_INPUT, S.WAITING_DELAY, S.RECOVERING, S.FALLBACK, S.DEGRADED]
TERMINAL = [S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT]
RETRY_TAIL = "only a recovering execution waiting for its next attempt can be retried"
HANDBACK_TAIL = "only a conversation a person holds can be handed back"
HELD = "a person holds the conversation: hand it back (handback) to move it on"


def execution(status: ExecutionStatus, **fields: Any) -> Execution:
    if status is S.PAUSED:
        fields.setdefault("paused_from", S.WAITING_INPUT)
    return Execution(
        id="ex-1",
        institution_id="acme",
        conversation_id="conv-1",
        contact_id="contact-1",
        flow_id="onboarding",
        flow_version=1,
        status=status,
        current_node_id="ask_name",
        variables={},
        created_at=NOW - 100,
        updated_at=NOW - 10,
        **fields,
    )


def expected_table() -> dict[tuple[S, str], str | None]:
    """The rules written out by hand, one cell per (state, operation)."""
    table: dict[tuple[S, str], str | None] = {}
    for status in ACTIVE:
        table |= {
            (status, "pause"): None,
            (status, "resume"): f"it is {status.value}",
            (status, "cancel"): None,
            (status, "advance"): None,
            (status, "retry"): None
            if status is S.RECOVERING
            else f"it is {status.value}; {RETRY_TAIL}",
            (status, "variables"): None,
            (status, "message"): None,
            (status, "handback"): f"it is {status.value}; {HANDBACK_TAIL}",
        }
    table |= {
        (S.PAUSED, "pause"): "it is paused",
        (S.PAUSED, "resume"): None,
        (S.PAUSED, "cancel"): None,
        (S.PAUSED, "advance"): None,
        (S.PAUSED, "retry"): f"it is paused; {RETRY_TAIL}",
        (S.PAUSED, "variables"): None,
        (S.PAUSED, "message"): None,
        (S.PAUSED, "handback"): f"it is paused (paused by an operator); {HANDBACK_TAIL}",
    }
    for status in TERMINAL:
        for operation in OPERATIONS:
            table[(status, operation)] = f"it is {status.value}"
        table[(status, "retry")] = (
            f"it is {status.value} (it is final: start a new execution); {RETRY_TAIL}"
        )
    return table


TABLE = expected_table()


def test_the_table_covers_every_state_and_operation() -> None:
    assert len(S) == 11
    assert OPERATIONS == (
        "pause",
        "resume",
        "cancel",
        "advance",
        "retry",
        "variables",
        "message",
        "handback",
    )
    assert len(TABLE) == 88 and set(TABLE) == {(s, o) for s in S for o in OPERATIONS}


@pytest.mark.parametrize(("status", "operation"), sorted(TABLE, key=lambda k: (k[0].value, k[1])))
def test_refusal(status: ExecutionStatus, operation: str) -> None:
    ex = execution(status)
    assert refusal(ex, operation, NOW) == TABLE[(status, operation)]  # type: ignore[arg-type]


@pytest.mark.parametrize("status", list(S))
def test_controls_lists_every_operation_with_its_refusal(status: ExecutionStatus) -> None:
    found = controls(execution(status), NOW)
    assert list(found) == list(OPERATIONS)
    for operation, control in found.items():
        reason = TABLE[(status, operation)]
        assert control == Control(reason is None, reason)
        assert control.wire() == {"allowed": reason is None, "reason": reason}


@pytest.mark.parametrize("paused_from", [*ACTIVE, None])
def test_a_paused_execution_allows_the_same_whatever_it_was_paused_from(
    paused_from: ExecutionStatus | None,
) -> None:
    ex = execution(S.PAUSED, paused_from=paused_from)
    assert {o: c.reason for o, c in controls(ex, NOW).items()} == {
        o: TABLE[(S.PAUSED, o)] for o in OPERATIONS
    }


@pytest.mark.parametrize(
    ("paused_from", "back_to"),
    [
        (S.WAITING_INPUT, S.WAITING_INPUT),
        (S.WAITING_DELAY, S.WAITING_DELAY),
        (S.RUNNING, S.RUNNING),
        (S.RECOVERING, S.RUNNING),
        (S.FALLBACK, S.RUNNING),
        (S.DEGRADED, S.RUNNING),
        (None, S.RUNNING),
    ],
)
def test_resume_target(paused_from: ExecutionStatus | None, back_to: ExecutionStatus) -> None:
    ex = execution(S.PAUSED, paused_from=paused_from)
    assert resume_target(ex) is back_to
    assert target(ex, "resume") is back_to


@pytest.mark.parametrize("status", list(S))
def test_targets(status: ExecutionStatus) -> None:
    ex = execution(status)
    assert target(ex, "pause") is S.PAUSED
    assert target(ex, "cancel") is S.CANCELLED
    assert target(ex, "advance") is S.RUNNING
    assert target(ex, "retry") is S.RUNNING
    assert target(ex, "variables") is status
    assert target(ex, "message") is status
    assert target(ex, "handback") is S.RUNNING


def test_a_conversation_a_person_holds_is_handed_back_not_resumed_or_advanced() -> None:
    """Held (paused, waiting for human, no paused_from): handback, cancel, variables and
    a message as the contact are allowed; resume and advance name the handback instead."""
    ex = execution(S.PAUSED, paused_from=None, waiting_for="human")
    assert {o: c.reason for o, c in controls(ex, NOW).items()} == {
        "pause": "it is paused",
        "resume": HELD,
        "cancel": None,
        "advance": HELD,
        "retry": f"it is paused; {RETRY_TAIL}",
        "variables": None,
        "message": None,
        "handback": None,
    }


@pytest.mark.parametrize(
    ("lease_expires_at", "reason"),
    [
        (None, None),
        (NOW - 0.001, None),  # ran out: nobody runs it
        (NOW - 3600, None),
        (NOW, "a worker is running it right now"),  # the store counts it live until past
        (NOW + 0.001, "a worker is running it right now"),
        (NOW + 30, "a worker is running it right now"),
    ],
)
def test_retry_with_a_live_or_expired_lease(
    lease_expires_at: float | None, reason: str | None
) -> None:
    ex = execution(S.RECOVERING, lease_owner="w1", lease_expires_at=lease_expires_at)
    assert refusal(ex, "retry", NOW) == reason
    assert controls(ex, NOW)["retry"] == Control(reason is None, reason)
    # the lease matters to retry only
    assert {o: c.allowed for o, c in controls(ex, NOW).items() if o != "retry"} == {
        o: TABLE[(S.RECOVERING, o)] is None for o in OPERATIONS if o != "retry"
    }


def test_a_lease_does_not_change_the_reason_outside_recovering() -> None:
    ex = execution(S.WAITING_INPUT, lease_owner="w1", lease_expires_at=NOW + 30)
    assert refusal(ex, "retry", NOW) == f"it is waiting_input; {RETRY_TAIL}"


@pytest.mark.parametrize("status", list(S))
def test_read_only_refuses_all_with_its_reason(status: ExecutionStatus) -> None:
    found = controls(execution(status), NOW, read_only="viewer keys may only read")
    assert {o: c.wire() for o, c in found.items()} == {
        o: {"allowed": False, "reason": "viewer keys may only read"} for o in OPERATIONS
    }


@given(
    status=st.sampled_from(list(S)),
    paused_from=st.sampled_from([*ACTIVE, None]),
    lease=st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    waiting_for=st.sampled_from([None, "input", "timer", "retry", "dependency", "operator"]),
)
def test_only_status_and_lease_decide(
    status: ExecutionStatus, paused_from: S | None, lease: float | None, waiting_for: str | None
) -> None:
    """Whatever else the row holds, the answer is the table's (and the lease's, for retry)."""
    ex = execution(
        status,
        paused_from=paused_from if status is S.PAUSED else None,
        lease_owner=None if lease is None else "w1",
        lease_expires_at=None if lease is None else NOW + lease,
        waiting_for=waiting_for,
    )
    found = controls(ex, NOW)
    for operation in OPERATIONS:
        want = TABLE[(status, operation)]
        live = ex.lease_expires_at is not None and ex.lease_expires_at >= NOW
        if operation == "retry" and status is S.RECOVERING and live:
            want = "a worker is running it right now"
        assert found[operation].reason == want
        assert found[operation].allowed is (want is None)
