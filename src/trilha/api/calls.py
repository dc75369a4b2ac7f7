"""Call cycles across flows, as publishing can see them (sub-flows that return).

A flow calling itself is seen by the flow's own checks
(:func:`trilha.core.flow.parse_flow`); a cycle through other flows (``main`` calls
``address``, which calls ``main``) only with the flows already stored. Publishing
looks: a cycle is a warning, not an error (a cycle may end on a condition, and the
flows of a cycle must be published one after the other), since at run time a call past
``[engine] max_call_depth`` fails its node anyway. What a flow will call is resolved
as the engine would resolve it for the flow's owner (its own flow, else the shared
one); a shared flow's names resolve per running institution, so for it only the
shared flows are followed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from trilha.core.flow import Flow, SubflowNode
from trilha.core.flow import Problem as FlowProblem
from trilha.core.tenancy import split_id
from trilha.store.base import StoredFlow

#: the stored flows one publication reads at most while following calls
MAX_FLOWS_FOLLOWED = 50

Lookup = Callable[[str], Awaitable[StoredFlow | None]]


def _calls(definition: Any) -> Iterator[str]:
    """The flows a stored definition's ``subflow`` nodes call."""
    nodes = definition.get("nodes") if isinstance(definition, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and node.get("type") == "subflow":
            target = node.get("flowId")
            if isinstance(target, str):
                yield target


def _names(reference: str, flow_id: str) -> bool:
    """Whether ``reference``, called from a flow of ``flow_id``'s owner, means that flow
    (an owner's own flow comes before the shared one of the same name; the flow being
    published may not be stored yet, so this is decided from the names alone)."""
    owner, name = split_id(flow_id)
    ref_owner, ref_name = split_id(reference)
    return ref_name == name and ref_owner in (None, owner)


async def call_cycles(flow: Flow, lookup: Lookup) -> list[FlowProblem]:
    """A warning for each ``subflow`` node of ``flow`` whose call comes back to ``flow``
    through stored flows, naming the way round."""
    found: list[FlowProblem] = []
    budget = MAX_FLOWS_FOLLOWED
    _, own_name = split_id(flow.id)
    for index, node in enumerate(flow.nodes):
        if not isinstance(node, SubflowNode) or _names(node.flow_id, flow.id):
            continue  # a direct self-call is the flow's own check's warning
        # breadth first, so the shortest way round is the one named
        paths: list[list[str]] = [[node.flow_id]]
        seen: set[str] = set()
        cycle: list[str] | None = None
        while paths and cycle is None and budget > 0:
            path = paths.pop(0)
            budget -= 1
            stored = await lookup(path[-1])
            if stored is None or stored.flow_id in seen:
                continue
            seen.add(stored.flow_id)
            for target in _calls(stored.definition):
                if _names(target, flow.id):
                    cycle = [*path, target]
                    break
                paths.append([*path, target])
        if cycle is not None:
            way = " → ".join([own_name, *(split_id(name)[1] for name in cycle)])
            found.append(
                FlowProblem(
                    f"nodes[{index}].flowId",
                    f"a call cycle through stored flows ({way}): each call nests one"
                    " sub-flow deeper, and a call past [engine] max_call_depth fails its node",
                    "warning",
                )
            )
    return found
