"""Which waiting executions may move to another flow version, and where to: the pure
rules of :mod:`trilha.core.moving`."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.core.execution import Execution
from trilha.core.flow import Flow, load_flow
from trilha.core.moving import counterpart, move, move_refusal
from trilha.core.states import ExecutionStatus

S = ExecutionStatus
NOW = 1_800_000_000.0


def _flow(version: int, *nodes: dict[str, Any]) -> Flow:
    return load_flow(
        {"id": "care", "version": version, "start": nodes[0]["id"], "nodes": list(nodes)}
    )


OLD = _flow(
    1,
    {"id": "ask", "type": "question", "text": "?", "variable": "a", "next": "desk"},
    {"id": "desk", "type": "handoff", "mode": "wait", "queue": "q", "next": "again"},
    {"id": "again", "type": "subflow", "flowId": "care", "next": "end"},
    {"id": "end", "type": "end"},
)
NEW = _flow(
    2,
    {"id": "ask2", "type": "question", "text": "?", "variable": "a", "next": "desk"},
    {"id": "desk", "type": "handoff", "mode": "wait", "queue": "q", "next": "end"},
    {"id": "end", "type": "end"},
)
MAP = {"ask": "ask2"}


def _ex(status: S, node: str, **fields: Any) -> Execution:
    fields.setdefault("flow_version", 1)
    return Execution(
        id="ex-1",
        institution_id="acme",
        conversation_id="c",
        contact_id="k",
        flow_id="care",
        status=status,
        current_node_id=node,
        variables={},
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def test_counterparts_come_from_the_map_else_the_same_id() -> None:
    assert counterpart("ask", NEW, MAP) == "ask2"
    assert counterpart("desk", NEW, MAP) == "desk"
    assert counterpart("again", NEW, MAP) is None
    assert counterpart("ask", NEW, {"ask": "nowhere"}) is None


def test_waits_move_and_turns_do_not() -> None:
    """A wait for input, a person's hold and an operator's pause of a wait move; a
    running turn, a pause of a turn and an execution a worker holds do not."""
    assert move_refusal(_ex(S.WAITING_INPUT, "ask"), OLD, NEW, MAP, now=NOW) is None
    held = _ex(S.PAUSED, "desk", waiting_for="human")
    assert move_refusal(held, OLD, NEW, MAP, now=NOW) is None
    paused = _ex(S.PAUSED, "ask", paused_from=S.WAITING_INPUT, waiting_for="operator")
    assert move_refusal(paused, OLD, NEW, MAP, now=NOW) is None
    turn = _ex(S.PAUSED, "ask", paused_from=S.RUNNING, waiting_for="operator")
    assert "paused from running, not waiting" in str(move_refusal(turn, OLD, NEW, MAP, now=NOW))
    assert "recovering, not waiting" in str(
        move_refusal(_ex(S.RECOVERING, "ask"), OLD, NEW, MAP, now=NOW)
    )
    leased = _ex(S.WAITING_INPUT, "ask", lease_owner="w1", lease_expires_at=NOW + 5)
    assert "a worker holds it" in str(move_refusal(leased, OLD, NEW, MAP, now=NOW))
    ended = _ex(S.COMPLETED, "end")
    assert move_refusal(ended, OLD, NEW, MAP, now=NOW) == "it is completed"
    elsewhere = _ex(S.WAITING_INPUT, "ask", flow_version=2)
    assert "not v1" in str(move_refusal(elsewhere, OLD, NEW, MAP, now=NOW))


def test_a_caller_frame_of_the_same_flow_needs_a_counterpart_and_moves_with_it() -> None:
    """Inside a sub-flow that is the same flow: the caller's ``subflow`` node must have a
    counterpart; with one, the frame moves to the new version with the running frame."""
    frame = {"flowId": "care", "version": 1, "nodeId": "again", "variables": {}, "output": {}}
    inside = _ex(S.WAITING_INPUT, "ask", stack=[frame])
    why = move_refusal(inside, OLD, NEW, MAP, now=NOW)
    assert why == "a caller frame returns to node 'again', which has no counterpart in v2"
    assert move_refusal(inside, OLD, NEW, MAP | {"again": "ask2"}, now=NOW) == (
        "a caller frame returns to node 'again' (a subflow), whose counterpart 'ask2' is a"
        " question: the wait would not make sense there"
    )
    other = {**frame, "flowId": "main", "nodeId": "call"}  # another flow's caller: kept
    outer = _ex(S.WAITING_INPUT, "ask", stack=[other])
    assert move_refusal(outer, OLD, NEW, MAP, now=NOW) is None
    assert move(outer, NEW, MAP) == ("ask", "ask2")
    assert (outer.flow_version, outer.current_node_id, outer.stack) == (2, "ask2", [other])


def test_the_cursor_reads_back_what_the_route_gave_out() -> None:
    """``nextCursor`` holds the state walked and the last execution examined."""
    from trilha.api.cursors import encode_cursor
    from trilha.api.problems import Problem
    from trilha.api.routes.migrations import _position

    assert _position(encode_cursor(2, NOW, "ex-9")) == (2, NOW, "ex-9")
    for bad in (encode_cursor(99, NOW, "x"), encode_cursor("a", NOW, "x"), "%%%"):
        with pytest.raises(Problem) as refused:
            _position(bad)
        assert refused.value.status == 422


def test_a_wait_for_an_event_needs_the_same_event() -> None:
    """The signal an execution waits for would never come to a node awaiting another."""
    wait = {"id": "pay", "type": "wait_event", "event": "paid", "next": "end"}
    end = {"id": "end", "type": "end"}
    old = _flow(1, wait, end)
    same, other = _flow(2, wait, end), _flow(2, {**wait, "event": "refunded"}, end)
    waiting = _ex(S.WAITING_INPUT, "pay", waiting_for="event:paid")
    assert move_refusal(waiting, old, same, {}, now=NOW) is None
    assert "waits for 'refunded'" in str(move_refusal(waiting, old, other, {}, now=NOW))
