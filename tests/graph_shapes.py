"""The largest flows ``trilha validate`` accepts, in the shapes that are hardest to draw.

Shared by the graph tests (unit and acceptance) and ``bench/graph.py``, so that the bound
the tests assert and the figures the bench prints are about the same flows. Every shape
is a valid flow of at most :data:`~trilha.core.flow.MAX_NODES` nodes whose compact JSON
is at most :data:`~trilha.core.flow.MAX_FLOW_BYTES`; a seeded random source makes the
random ones the same every run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from trilha.core.flow import MAX_FLOW_BYTES, MAX_NODES

Definition = dict[str, Any]


def size(definition: Definition) -> int:
    """The flow's bytes as a client would send it at the most compact."""
    return len(json.dumps(definition, separators=(",", ":")).encode())


def _flow(flow_id: str, nodes: list[dict[str, Any]]) -> Definition:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": nodes}


def chain(n: int = MAX_NODES) -> Definition:
    """One long line: as many layers as nodes."""
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "type": "message", "text": "m", "next": f"n{i + 1}"} for i in range(n - 1)
    ]
    nodes.append({"id": f"n{n - 1}", "type": "end"})
    return _flow("chain", nodes)


def long_edges(n: int = MAX_NODES) -> Definition:
    """A chain of questions whose invalid and timeout paths all go to the end: every
    node has two edges spanning the rest of the flow (quadratic in waypoints, drawn
    naively)."""
    last = f"q{n - 1}"
    nodes: list[dict[str, Any]] = [
        {
            "id": f"q{i}",
            "type": "question",
            "text": "?",
            "variable": "v",
            "next": f"q{i + 1}",
            "onInvalid": last,
            "onTimeout": last,
        }
        for i in range(n - 1)
    ]
    nodes.append({"id": last, "type": "end"})
    return _flow("long-edges", nodes)


def fan_out(n: int = MAX_NODES) -> Definition:
    """One condition with 200 branches to conditions of 200 branches each, to jumps
    (into other flows) and ends: a layer thousands of nodes wide."""
    nodes: list[dict[str, Any]] = []
    middle = -(-(n - 1) // 201)  # as few middle conditions as 200 branches each allow
    leaves = n - 1 - middle
    nodes.append(
        {
            "id": "root",
            "type": "condition",
            "branches": [{"when": f"a=={j}", "next": f"c{j}"} for j in range(middle)],
        }
    )
    for j in range(middle):
        nodes.append(
            {
                "id": f"c{j}",
                "type": "condition",
                "branches": [
                    {"when": f"b=={k}", "next": f"l{k}"}
                    for k in range(j * leaves // middle, (j + 1) * leaves // middle)
                ],
            }
        )
    for k in range(leaves):
        leaf = {"id": f"l{k}", "type": "jump", "flowId": "other"}
        nodes.append(leaf if k % 2 else {"id": f"l{k}", "type": "end"})
    return _flow("fan-out", nodes)


def crossed(n: int = MAX_NODES) -> Definition:
    """Layers 1,000 nodes wide, each node a condition branching to seeded random nodes
    of the next layer: thousands of edges between two wide layers, most crossing."""
    rng = random.Random(7)
    width, per = 998, 6  # five layers and six branches a node: about what the bounds allow
    hubs = -(-width // 200)
    nodes: list[dict[str, Any]] = [
        {
            "id": "root",
            "type": "condition",
            "branches": [{"when": f"a=={j}", "next": f"h{j}"} for j in range(hubs)],
        }
    ]
    for j in range(hubs):
        nodes.append(
            {
                "id": f"h{j}",
                "type": "condition",
                "branches": [
                    {"when": f"b=={k}", "next": f"x0.{k}"}
                    for k in range(j * 200, min(width, (j + 1) * 200))
                ],
            }
        )
    layer = 0
    while len(nodes) + width <= n:
        last = len(nodes) + 2 * width > n
        # each of ``per`` shuffles gives every node of the next layer one incoming edge
        shuffles = [rng.sample(range(width), width) for _ in range(per)]
        for j in range(width):
            node_id = f"x{layer}.{j}"
            if last:
                nodes.append({"id": node_id, "type": "end"})
                continue
            targets = [shuffle[j] for shuffle in shuffles]
            nodes.append(
                {
                    "id": node_id,
                    "type": "condition",
                    "branches": [{"when": "a", "next": f"x{layer + 1}.{t}"} for t in targets],
                }
            )
        layer += 1
    return _flow("crossed", nodes)


def back_edges(n: int = MAX_NODES) -> Definition:
    """A chain whose every node also loops back, to the start or to a seeded random
    earlier node: thousands of loops, each drawn up the side."""
    rng = random.Random(11)
    nodes: list[dict[str, Any]] = []
    for i in range(n - 1):
        back = "q0" if i % 2 else f"q{rng.randrange(i + 1)}"
        nodes.append(
            {
                "id": f"q{i}",
                "type": "question",
                "text": "?",
                "variable": "v",
                "next": f"q{i + 1}",
                "onInvalid": back,
                "fallback": {"next": f"q{rng.randrange(i + 1)}"},
            }
        )
    nodes.append({"id": f"q{n - 1}", "type": "end"})
    return _flow("back-edges", nodes)


def dense(n: int = MAX_NODES, budget: int = MAX_FLOW_BYTES) -> Definition:
    """As many edges as 1 MiB holds: a chain (so the flow is deep) with conditions of
    200 branches to seeded random nodes anywhere, forwards (long edges over many
    layers) and backwards (loops), filling the rest of the bytes."""
    rng = random.Random(3)
    nodes: list[dict[str, Any]] = [
        {"id": f"d{i}", "type": "set", "next": f"d{i + 1}"} for i in range(n - 1)
    ]
    nodes.append({"id": f"d{n - 1}", "type": "end"})
    # each branch costs about 30 bytes; turn evenly spread nodes into conditions
    spare = budget - size(_flow("dense", nodes)) - 4_096
    conditions = max(1, spare // (200 * 30 + 60))
    for k in range(conditions):
        i = 1 + (k * (n - 2)) // conditions  # the first node stays a set: see waiting()
        nodes[i] = {
            "id": f"d{i}",
            "type": "condition",
            "branches": [{"when": "a", "next": f"d{rng.randrange(n)}"} for _ in range(200)],
            "default": f"d{i + 1}",
        }
    definition = _flow("dense", nodes)
    while size(definition) > budget:  # trim the last condition until it fits
        last = next(x for x in reversed(nodes) if x["type"] == "condition")
        last["branches"] = last["branches"][:-10]
    return definition


#: name -> builder of the largest accepted flow of that shape
SHAPES: dict[str, Callable[[], Definition]] = {
    "chain": chain,
    "long-edges": long_edges,
    "fan-out": fan_out,
    "crossed": crossed,
    "back-edges": back_edges,
    "dense": dense,
}


def waiting(definition: Definition) -> Definition:
    """The flow with its first node, a ``message`` or a ``set``, made a question with the
    same id and next: an execution of it then waits for the contact at once instead of
    running thousands of steps (the shape, and so the drawing's cost, is the same)."""
    first = definition["nodes"][0]
    if first["type"] not in ("message", "set"):
        return definition
    question = {"id": first["id"], "type": "question", "text": "?", "variable": "v"}
    if "next" in first:
        question["next"] = first["next"]
    return definition | {"nodes": [question, *definition["nodes"][1:]]}
