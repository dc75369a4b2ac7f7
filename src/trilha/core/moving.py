"""Moving waiting executions to another version of their flow. Pure: no I/O.

An execution pins the flow version it started on (DESIGN §2); an operator may move
the ones that *wait* to another version, node by node: each node of the old version
has a *counterpart* in the new one, the node the ``nodeMap`` names for it, else the
node of the same id. What decides whether one execution moves is here, so the API,
the CLI and the tests agree on it:

* only a wait moves: ``waiting_input`` (a question, a ``wait_event``),
  ``waiting_delay`` (a delay, its due time kept), a conversation a person holds (a
  ``handoff`` in ``wait`` mode: the handback then goes on in the new version), and an
  operator's pause *of such a wait* (it stays paused; resume returns to the wait in
  the new version). A paused turn (paused from ``running``, ``recovering``, ...) and
  every active state are skipped: their node is half done, its scratch belongs to the
  old node;
* the counterpart must be a node of the *same type*: the node's scratch (a
  question's re-ask count, a delay's due time, a hold's queue) and what the execution
  waits for keep their meaning only then. A question whose counterpart is a message
  is skipped with that reason, and so is a ``wait_event`` whose counterpart waits for
  another event;
* an execution inside a sub-flow moves with its running frame (the sub-flow is the
  flow moved). A caller frame on its stack that runs the same flow at the old
  version (a flow calling itself) moves too: its ``subflow`` node needs a ``subflow``
  counterpart, else the execution is skipped. Callers of other flows keep their own
  versions.

Which variables the new version reads that an execution lacks: the roots of every path
the templates and expressions of the nodes reachable from the counterpart read, less
those these nodes set themselves (a question's variable, a ``saveAs``, ...) and
trilha's own (``sys``, ``contact``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from trilha.core.execution import Execution
from trilha.core.flow import Flow, NodeBase, WaitEventNode, node_reads, variables_written
from trilha.core.frames import frames
from trilha.core.hold import held
from trilha.core.states import ExecutionStatus

__all__ = [
    "MAX_NODE_MAP",
    "counterpart",
    "move",
    "move_refusal",
    "node_type",
    "reads_from",
    "variables_lacking",
]

S = ExecutionStatus

#: the most entries one ``nodeMap`` may hold
MAX_NODE_MAP: Final = 1_000

#: the states whose execution waits on something outside the engine
_WAITS: Final = frozenset({S.WAITING_INPUT, S.WAITING_DELAY})
#: variables a flow reads without setting them (trilha's own, and the contact's)
_GIVEN: Final = frozenset({"sys", "contact"})


def node_type(node: NodeBase) -> str:
    """The node's ``type`` as its wire form names it."""
    return str(getattr(node, "type", type(node).__name__))


def counterpart(node_id: str, new: Flow, node_map: Mapping[str, str]) -> str | None:
    """The node of ``new`` that stands for the old version's ``node_id``: the one
    ``node_map`` names, else the one of the same id; ``None`` when there is none."""
    mapped = node_map.get(node_id)
    if mapped is not None:
        return mapped if new.node(mapped) is not None else None
    return node_id if new.node(node_id) is not None else None


def _waits(ex: Execution) -> bool:
    if ex.status in _WAITS or held(ex):
        return True
    return ex.status is S.PAUSED and ex.paused_from in _WAITS


def move_refusal(
    ex: Execution,
    old: Flow,
    new: Flow,
    node_map: Mapping[str, str],
    *,
    now: float,
) -> str | None:
    """Why ``ex`` (of ``old``) cannot move to ``new``, or ``None`` when it can."""
    if (ex.flow_id, ex.flow_version) != (old.id, old.version):
        return f"it runs flow '{ex.flow_id}' v{ex.flow_version} now, not v{old.version}"
    if ex.status.terminal:
        return f"it is {ex.status.value}"
    if ex.lease_owner is not None and (ex.lease_expires_at or 0) > now:
        return "a worker holds it right now (it is running a step); try again when it waits"
    if not _waits(ex):
        shown = ex.status.value
        if ex.status is S.PAUSED and ex.paused_from is not None:
            shown = f"paused from {ex.paused_from.value}"
        return f"it is {shown}, not waiting: only a waiting execution moves"
    problem = _node_problem(ex.current_node_id or "", old, new, node_map, "it waits at")
    if problem is not None:
        return problem
    try:
        stack = frames(ex.stack)
    except ValueError as exc:
        return f"its call stack does not read back: {exc}"
    for frame in stack:
        if (frame.flow_id, frame.version) == (old.id, old.version):
            problem = _node_problem(frame.node_id, old, new, node_map, "a caller frame returns to")
            if problem is not None:
                return problem
    return None


def _node_problem(
    node_id: str, old: Flow, new: Flow, node_map: Mapping[str, str], where: str
) -> str | None:
    here = old.node(node_id)
    if here is None:
        return f"{where} node '{node_id}', which v{old.version} does not have"
    there_id = counterpart(node_id, new, node_map)
    if there_id is None:
        return f"{where} node '{node_id}', which has no counterpart in v{new.version}"
    there = new.node(there_id)
    assert there is not None
    if node_type(here) != node_type(there):
        return (
            f"{where} node '{node_id}' (a {node_type(here)}), whose counterpart"
            f" '{there_id}' is a {node_type(there)}: the wait would not make sense there"
        )
    if (
        isinstance(here, WaitEventNode)
        and isinstance(there, WaitEventNode)
        and here.event != there.event
    ):
        return (
            f"{where} node '{node_id}' for event '{here.event}', whose counterpart"
            f" '{there_id}' waits for '{there.event}': the signal it waits for would never come"
        )
    return None


def move(ex: Execution, new: Flow, node_map: Mapping[str, str]) -> tuple[str, str]:
    """Put ``ex`` (checked by :func:`move_refusal`) on ``new`` at its current node's
    counterpart, with the caller frames of the same flow; everything else (state,
    variables, the node's scratch, the due time) is kept. Returns (from, to) node."""
    old_id, old_version = ex.flow_id, ex.flow_version
    moved_from = ex.current_node_id or ""
    moved_to = counterpart(moved_from, new, node_map) or moved_from
    stack: list[dict[str, Any]] = []
    for frame in frames(ex.stack):
        wire = frame.wire()
        if (frame.flow_id, frame.version) == (old_id, old_version):
            wire["version"] = new.version
            wire["nodeId"] = counterpart(frame.node_id, new, node_map) or frame.node_id
        stack.append(wire)
    ex.stack = stack
    ex.flow_version = new.version
    ex.current_node_id = moved_to
    return moved_from, moved_to


def reads_from(flow: Flow, start: str) -> list[str]:
    """The variables (roots: ``customer`` for ``customer.vip``) the nodes reachable from
    ``start`` read and none of them sets, sorted."""
    seen: set[str] = set()
    todo = [start]
    read: set[str] = set()
    written: set[str] = set(_GIVEN)
    while todo:
        node = flow.node(todo.pop())
        if node is None or node.id in seen:
            continue
        seen.add(node.id)
        for _, name in variables_written(node):
            written.add(name.split(".", 1)[0])
        read.update(_roots(path for _, path in node_reads(node)))
        todo.extend(target for _, target in node.targets())
    return sorted(read - written)


def _roots(paths: Iterable[str]) -> set[str]:
    return {path.split(".", 1)[0].split("[", 1)[0] for path in paths if path}


def variables_lacking(reads: Iterable[str], variables: Mapping[str, Any]) -> list[str]:
    """Which of ``reads`` (variable roots) ``variables`` does not hold, sorted."""
    return sorted(name for name in reads if name not in variables)
