"""Sub-flows that return: the call stack an execution carries. Pure: no I/O.

A ``subflow`` node runs another flow inside the same execution (one transcript, one
trail) and comes back to it. The *running frame* is the execution's own fields, as
it always was: ``flow_id``, ``flow_version``, ``current_node_id``, ``variables``,
``node_state``; so everything that reads an execution (the step loop, recovery, the
operator controls, the graph) works inside a sub-flow unchanged. Each caller waiting
for a sub-flow to come back is a :class:`Frame` on ``Execution.stack``, oldest first:
its flow (pinned to the version it ran), the ``subflow`` node it waits at, its
variables (kept there while the sub-flow sees only its input) and which of the
sub-flow's variables it takes back.

When the running frame ends, :func:`pop` puts the caller back and leaves it at its
``subflow`` node with :data:`RETURNED` in its node state (how the sub-flow ended and
the values handed back); the node's processor then picks the branch. The stack is part
of every checkpoint's state (covered by its checksum), so a crash, or a corrupted row,
resumes inside the sub-flow with its callers intact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from trilha.core.paths import MISSING, resolve_path

if TYPE_CHECKING:  # execution.py reads stacks back with this module's frames()
    from trilha.core.execution import Execution

__all__ = [
    "RETURNED",
    "RETURNING",
    "Frame",
    "frames",
    "pop",
    "push",
    "root_flow",
    "running_frame_steps",
    "stack_view",
    "step_flows",
]

#: the node-state key a caller's ``subflow`` node finds when its sub-flow came back
RETURNED: Final = "returned"
#: how a sub-flow may end and come back (the rest, a turn timeout or a cancel, ends
#: the whole execution); ``timeout`` comes back only to a caller with a branch for it
RETURNING: Final = frozenset({"completed", "escalated", "failed", "invalid_input", "timeout"})


@dataclass(frozen=True, slots=True)
class Frame:
    """A caller waiting for its sub-flow: where it waits, and what it had."""

    flow_id: str
    version: int
    #: the caller's ``subflow`` node, where it goes on when the sub-flow ends
    node_id: str
    variables: dict[str, Any]
    #: caller variable -> the sub-flow's variable handed back into it
    output: dict[str, str]

    def wire(self) -> dict[str, Any]:
        return {
            "flowId": self.flow_id,
            "version": self.version,
            "nodeId": self.node_id,
            "variables": self.variables,
            "output": self.output,
        }

    @classmethod
    def from_wire(cls, data: Any) -> Frame:
        """A stored frame, or :class:`ValueError` naming what is wrong with it (a
        checkpoint holding one fails its checks and is not restored from)."""
        if not isinstance(data, Mapping):
            raise ValueError("a call-stack frame is not an object")
        flow_id, version, node_id = data.get("flowId"), data.get("version"), data.get("nodeId")
        variables, output = data.get("variables"), data.get("output", {})
        if not isinstance(flow_id, str) or not flow_id:
            raise ValueError("a call-stack frame has no flowId")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError("a call-stack frame has no version")
        if not isinstance(node_id, str) or not node_id:
            raise ValueError("a call-stack frame has no nodeId")
        if not isinstance(variables, dict):
            raise ValueError("a call-stack frame's variables are not an object")
        if not isinstance(output, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in output.items()
        ):
            raise ValueError("a call-stack frame's output is not a map of names")
        return cls(flow_id, version, node_id, variables, dict(output))


def frames(stack: Sequence[Any]) -> list[Frame]:
    """The stored stack read back (oldest caller first), checked frame by frame."""
    if not isinstance(stack, list | tuple):
        raise ValueError("the call stack is not a list")
    return [Frame.from_wire(item) for item in stack]


def push(
    ex: Execution,
    *,
    flow_id: str,
    version: int,
    start: str,
    input: Mapping[str, Any],
    output: Mapping[str, str],
) -> None:
    """Enter a sub-flow: the running frame becomes a caller waiting at its current
    (``subflow``) node, and the sub-flow runs from ``start`` with ``input`` alone."""
    caller = Frame(
        ex.flow_id,
        ex.flow_version,
        ex.current_node_id or "",
        ex.variables,
        dict(output),
    )
    ex.stack = [*ex.stack, caller.wire()]
    ex.flow_id, ex.flow_version = flow_id, version
    ex.current_node_id = start
    ex.variables = {}
    for name, value in input.items():
        _set(ex.variables, name, value)
    ex.node_state, ex.attempts = {}, 0


def pop(
    ex: Execution,
    outcome: str,
    *,
    reason: str,
    queue: str | None = None,
    handoff_reason: str | None = None,
) -> Frame:
    """Leave the running sub-flow, which ended with ``outcome``: its caller runs again
    at its ``subflow`` node, whose node state says how the sub-flow ended and holds the
    values it hands back (each ``output`` variable, ``None`` when the sub-flow did not
    set it). Returns the caller's frame."""
    caller = Frame.from_wire(ex.stack[-1])
    values = {}
    for name, source in caller.output.items():
        value = resolve_path(ex.variables, source)
        values[name] = None if value is MISSING else value
    returned: dict[str, Any] = {
        "outcome": outcome,
        "flowId": ex.flow_id,
        "flowVersion": ex.flow_version,
        "nodeId": ex.current_node_id,
        "reason": reason,
        "values": values,
    }
    if queue is not None:
        returned["queue"] = queue
        returned["handoffReason"] = handoff_reason
    ex.stack = list(ex.stack[:-1])
    ex.flow_id, ex.flow_version = caller.flow_id, caller.version
    ex.current_node_id = caller.node_id
    ex.variables = dict(caller.variables)
    ex.node_state, ex.attempts = {RETURNED: returned}, 0
    return caller


def root_flow(stack: Any) -> tuple[str, int] | None:
    """The flow the execution started in (``(stored id, version)``), read leniently from
    a stored stack: what a corrupted row without a valid checkpoint restarts from."""
    if not isinstance(stack, list) or not stack:
        return None
    try:
        first = Frame.from_wire(stack[0])
    except ValueError:
        return None
    return first.flow_id, first.version


def stack_view(ex: Execution) -> list[dict[str, Any]]:
    """The call stack as the API shows it, oldest first, the running frame last
    (``running: true``; its variables are the execution's ``variables``)."""
    shown = [
        {
            "flowId": frame.get("flowId"),
            "version": frame.get("version"),
            "nodeId": frame.get("nodeId"),
            "running": False,
            "variables": frame.get("variables"),
        }
        for frame in ex.stack
        if isinstance(frame, Mapping)
    ]
    shown.append(
        {
            "flowId": ex.flow_id,
            "version": ex.flow_version,
            "nodeId": ex.current_node_id,
            "running": True,
        }
    )
    return shown


def step_flows(
    states: Sequence[tuple[int, Mapping[str, Any] | None]],
) -> dict[int, tuple[str, int]]:
    """The flow each step's node belongs to (``seq -> (stored id, version)``), from the
    checkpoints' states (``None``: one that failed its checks, which tells nothing).

    A checkpoint keeps the state *after* its step, which is the step's own flow except
    across a call (its state is already in the sub-flow: the node is the caller's, the
    frame just pushed) and a return (already back in the caller: the node is the
    sub-flow's, the flow before)."""
    found: dict[int, tuple[str, int]] = {}
    before: Mapping[str, Any] | None = None
    for seq, state in states:
        if state is None:
            before = None
            continue
        depth = len(state.get("stack") or [])
        was = len(before.get("stack") or []) if before is not None else 0
        flow = state.get("flow") or ["", 0]
        if depth > was:
            caller = (state.get("stack") or [])[-1]
            found[seq] = (str(caller.get("flowId")), int(caller.get("version", 0)))
        elif depth < was and before is not None:
            prior = before.get("flow") or ["", 0]
            found[seq] = (str(prior[0]), int(prior[1]))
        else:
            found[seq] = (str(flow[0]), int(flow[1]))
        before = state
    return found


def running_frame_steps(depth: int, depths: Sequence[int]) -> list[int]:
    """Which of an execution's steps (by position; ``depths``: each checkpoint's stack
    depth, oldest first) show the variables of its running frame (``depth`` callers
    deep): those at its depth since it was last entered. The steps of the sub-flows it
    called are not its own; a sub-flow's variables begin with its call."""
    kept: list[int] = []
    for index, at in enumerate(depths):
        if at < depth:
            kept.clear()  # a caller's step: the running frame was entered after it
        elif at == depth:
            kept.append(index)
    return kept


def _set(variables: dict[str, Any], path: str, value: Any) -> None:
    """Assign ``a.b.c`` inside nested objects (as the engine's ``set_path`` does)."""
    parts = path.split(".")
    node = variables
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
