"""The execution state machine: the 11 states and the one transition table."""

from __future__ import annotations

import pytest

from trilha.core.states import (
    TERMINAL,
    TRANSITIONS,
    ExecutionStatus,
    check_transition,
    is_allowed,
)
from trilha.errors import IllegalTransition

S = ExecutionStatus


def test_there_are_eleven_states_four_terminal() -> None:
    """DESIGN §3 lists eleven states, four of them terminal."""
    assert len(S) == 11
    assert {s for s in S if s.terminal} == {S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT}


def test_every_state_has_a_row() -> None:
    """The table has a row for every state and for birth (None)."""
    assert set(TRANSITIONS) == {None, *S}


def test_terminal_states_have_no_way_out() -> None:
    """Nothing leaves completed, failed, cancelled or timeout."""
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
        for target in S:
            if target != state:
                with pytest.raises(IllegalTransition):
                    check_transition(state, target)


def test_an_execution_is_born_running() -> None:
    """The only birth transition is into running."""
    assert TRANSITIONS[None] == {S.RUNNING}
    with pytest.raises(IllegalTransition):
        check_transition(None, S.WAITING_INPUT)


def test_paused_is_left_only_by_resume_advance_or_cancel() -> None:
    """An operator's pause is not undone by the engine (no fail, no complete)."""
    assert TRANSITIONS[S.PAUSED] == {S.RUNNING, S.WAITING_INPUT, S.WAITING_DELAY, S.CANCELLED}
    with pytest.raises(IllegalTransition, match="paused -> completed"):
        check_transition(S.PAUSED, S.COMPLETED)


def test_every_active_state_can_be_cancelled_and_paused() -> None:
    """An operator can always cancel, and pause any active state but paused itself."""
    for state in S:
        if not state.terminal:
            assert is_allowed(state, S.CANCELLED)
            if state is not S.PAUSED:
                assert is_allowed(state, S.PAUSED)


def test_waiting_states_do_not_complete_without_running() -> None:
    """A wait ends by running again; it never jumps straight to completed."""
    assert not is_allowed(S.WAITING_INPUT, S.COMPLETED)
    assert not is_allowed(S.WAITING_DELAY, S.COMPLETED)
    assert is_allowed(S.WAITING_INPUT, S.TIMEOUT)


def test_staying_in_a_state_is_not_a_transition() -> None:
    """check_transition accepts a no-op, even from a terminal state."""
    check_transition(S.COMPLETED, S.COMPLETED)
    check_transition(S.RUNNING, S.RUNNING)


def test_illegal_transition_names_both_states() -> None:
    """The error says what was refused, for the ERROR log line."""
    with pytest.raises(IllegalTransition) as info:
        check_transition(S.FAILED, S.RUNNING)
    assert "failed -> running" in str(info.value)
    assert info.value.details == {"source": S.FAILED, "target": S.RUNNING}
