"""The call stack's pure parts: entering and leaving a sub-flow, reading a stored stack
back, which flow a step's node belongs to, and which steps are the running frame's;
and the subflow node's model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from trilha.core.execution import Execution, restore_state
from trilha.core.flow import SubflowNode, parse_flow
from trilha.core.frames import (
    RETURNED,
    Frame,
    frames,
    pop,
    push,
    root_flow,
    running_frame_steps,
    stack_view,
    step_flows,
)
from trilha.core.graph import edges
from trilha.core.states import ExecutionStatus


def execution(**fields: Any) -> Execution:
    base: dict[str, Any] = {
        "id": "e1",
        "institution_id": "acme",
        "conversation_id": "c",
        "contact_id": "k",
        "flow_id": "acme/main",
        "flow_version": 2,
        "status": ExecutionStatus.RUNNING,
        "current_node_id": "call",
        "variables": {"secret": 1, "cep0": "x"},
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    return Execution(**(base | fields))


def test_push_then_pop_restores_the_caller_and_hands_back_the_output() -> None:
    """The sub-flow sees its input alone (dotted names nest); coming back, the caller's
    variables are its own again and the node state carries the output, null for a
    variable the sub-flow never set."""
    ex = execution(node_state={"scratch": 1}, attempts=2)
    push(
        ex,
        flow_id="acme/address",
        version=1,
        start="ask",
        input={"cep": "x", "who.name": "Ana"},
        output={"address": "result", "missing": "nope", "deep.n": "result.n"},
    )
    assert (ex.flow_id, ex.flow_version, ex.current_node_id) == ("acme/address", 1, "ask")
    assert ex.variables == {"cep": "x", "who": {"name": "Ana"}}
    assert (ex.node_state, ex.attempts) == ({}, 0)
    assert frames(ex.stack) == [
        Frame(
            "acme/main",
            2,
            "call",
            {"secret": 1, "cep0": "x"},
            {"address": "result", "missing": "nope", "deep.n": "result.n"},
        )
    ]
    ex.variables["result"] = {"n": 5}
    ex.current_node_id = "bye"
    caller = pop(ex, "completed", reason="reached end 'bye'")
    assert caller.node_id == "call" and ex.stack == []
    assert (ex.flow_id, ex.flow_version, ex.current_node_id) == ("acme/main", 2, "call")
    assert ex.variables == {"secret": 1, "cep0": "x"}
    returned = ex.node_state[RETURNED]
    assert returned["values"] == {"address": {"n": 5}, "missing": None, "deep.n": 5}
    assert (returned["outcome"], returned["flowId"], returned["nodeId"]) == (
        "completed",
        "acme/address",
        "bye",
    )


def test_a_stack_in_the_state_survives_a_restore_and_is_checked() -> None:
    """restore_state puts the stack back; a malformed one raises (the checkpoint is not
    one to restore from), and an empty one is left out of the checksummed state."""
    ex = execution()
    assert '"stack"' not in ex.state_payload()
    push(ex, flow_id="acme/address", version=1, start="ask", input={}, output={})
    state = orjson.loads(ex.state_payload())
    probe = execution(flow_id="other", variables={})
    restore_state(probe, state)
    assert probe.stack == ex.stack and probe.flow_id == "acme/address"
    for broken in ([{"flowId": "x"}], "nope", [{"flowId": "x", "version": True}]):
        with pytest.raises(ValueError, match=r"call.stack"):
            restore_state(probe, {**state, "stack": broken})


def test_the_root_flow_is_read_leniently() -> None:
    """What a corrupted row without checkpoints restarts from."""
    frame = Frame("acme/main", 3, "call", {}, {}).wire()
    assert root_flow([frame, {"garbage": 1}]) == ("acme/main", 3)
    assert root_flow([]) is None
    assert root_flow("x") is None
    assert root_flow([{"flowId": "a"}]) is None


def test_the_view_marks_the_running_frame_last() -> None:
    ex = execution()
    push(ex, flow_id="acme/address", version=1, start="ask", input={"cep": "x"}, output={})
    assert stack_view(ex) == [
        {
            "flowId": "acme/main",
            "version": 2,
            "nodeId": "call",
            "running": False,
            "variables": {"secret": 1, "cep0": "x"},
        },
        {"flowId": "acme/address", "version": 1, "nodeId": "ask", "running": True},
    ]


def _state(flow: str, depth: int) -> dict[str, Any]:
    frame = Frame("main", 1, "call", {}, {}).wire()
    return {"flow": [flow, 1], "stack": [frame] * depth}


def test_each_step_belongs_to_the_flow_its_node_ran_in() -> None:
    """The call step is the caller's, the return step the sub-flow's; a jump step its
    own flow, the steps after it the new flow's; a damaged checkpoint tells nothing."""
    states: list[tuple[int, dict[str, Any] | None]] = [
        (1, _state("main", 0)),  # hello
        (2, _state("address", 1)),  # call (the caller's node)
        (3, _state("address", 1)),  # ask
        (4, _state("address", 1)),  # go: a jump (its state still in address)
        (5, _state("landing", 1)),  # a landing node
        (6, _state("main", 0)),  # landing's end: the return
        (7, None),
        (8, _state("main", 0)),
    ]
    assert step_flows(states) == {
        1: ("main", 1),
        2: ("main", 1),
        3: ("address", 1),
        4: ("address", 1),
        5: ("landing", 1),
        6: ("landing", 1),
        8: ("main", 1),
    }


def test_the_running_frames_steps_begin_with_its_call() -> None:
    depths = [0, 1, 1, 2, 2, 1, 0, 0, 1, 1]
    assert running_frame_steps(1, depths) == [8, 9]
    assert running_frame_steps(0, depths) == [0, 6, 7]
    assert running_frame_steps(2, [0, 1, 2]) == [2]


def test_the_node_model_checks_names_and_warns_of_a_self_call() -> None:
    """Bad paths are errors naming the field; the default output is result -> result;
    branches name known outcomes only."""
    flow = {
        "id": "main",
        "start": "call",
        "nodes": [
            {
                "id": "call",
                "type": "subflow",
                "flowId": "main",
                "input": {"9bad": "x"},
                "output": {"ok": "not a path"},
                "next": "bye",
            },
            {"id": "bye", "type": "end"},
        ],
    }
    parsed, problems = parse_flow(flow)
    assert parsed is None
    errors = {(p.path, p.severity) for p in problems}
    assert ("nodes[0].input.9bad", "error") in errors
    assert ("nodes[0].output.ok", "error") in errors
    assert ("nodes[0].flowId", "warning") in errors

    node = SubflowNode.model_validate({"id": "c", "type": "subflow", "flowId": "address"})
    assert node.output == {"result": "result"} and node.branches == {}
    bad, problems = parse_flow(
        {
            "id": "m",
            "start": "c",
            "nodes": [
                {"id": "c", "type": "subflow", "flowId": "a", "branches": {"later": "c"}},
            ],
        }
    )
    assert bad is None
    assert any(p.path.startswith("nodes[0].branches") for p in problems)


def test_branch_targets_are_checked_and_drawn() -> None:
    """A branch naming no node is an error at its path; a branch is an edge."""
    flow = {
        "id": "m",
        "start": "c",
        "nodes": [
            {"id": "c", "type": "subflow", "flowId": "a", "branches": {"failed": "nowhere"}},
        ],
    }
    parsed, problems = parse_flow(flow)
    assert parsed is None
    assert any(p.path == "nodes[0].branches.failed" for p in problems)
    flow["nodes"][0]["branches"] = {"failed": "sorry", "completed": "ok"}
    flow["nodes"] += [{"id": "sorry", "type": "end"}, {"id": "ok", "type": "end"}]
    parsed, problems = parse_flow(flow)
    assert parsed is not None
    assert not [p for p in problems if "no next node" in p.message]
    drawn = {(e.source, e.target, e.kind, e.label) for e in edges(parsed)}
    assert drawn == {("c", "sorry", "branch", "failed"), ("c", "ok", "branch", "completed")}
