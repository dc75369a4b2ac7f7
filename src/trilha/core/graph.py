"""A flow as a drawable graph: its edges, labelled, and a layered layout.

The debugger draws the flow an execution runs; the layout is computed here, in
Python, rather than in the browser so that it is typed, tested and the same for
every client. It is the classic layered (Sugiyama) scheme, kept small:

1. edges that close a loop (found by a depth-first walk from ``start``) are
   turned around, so the rest is acyclic;
2. each node's layer is its longest distance from a root, so every forward edge
   points down;
3. an edge spanning several layers gets a waypoint per layer crossed, which then
   takes part in the ordering like a small node (edges go around nodes, not
   through them);
4. nodes within a layer are ordered by the barycentre of their neighbours, in
   sweeps down and up, which removes most crossings;
5. x positions are pulled towards the neighbours' centre and then pushed apart
   to the minimum gap, left to right.

Loop-closing ("back") edges are drawn up the right-hand side of the drawing.
Flows are small (at most a few hundred nodes), so clarity beats speed here:
every step is at worst quadratic in a layer's width.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trilha.core.flow import AiNode, ConditionNode, Flow, JumpNode, NodeBase

NODE_WIDTH = 176.0
NODE_HEIGHT = 52.0
#: the width a waypoint of a long edge takes in its layer
WAYPOINT_WIDTH = 24.0
GAP_X = 32.0
GAP_Y = 56.0
MARGIN = 24.0
#: how far right of the drawing back edges run, one lane each
LANE = 18.0
SWEEPS = 6
LABEL_LIMIT = 40


@dataclass(frozen=True, slots=True)
class Edge:
    """``source -> target``; ``field`` is where the flow names it (``branches[1].next``)."""

    source: str
    target: str
    field: str
    kind: str
    label: str


@dataclass(slots=True)
class PlacedNode:
    id: str
    type: str
    label: str
    x: float
    y: float
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "label": self.label,
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "width": self.width,
            "height": self.height,
        }


@dataclass(slots=True)
class PlacedEdge:
    edge: Edge
    points: list[tuple[float, float]]
    back: bool

    def wire(self) -> dict[str, Any]:
        return {
            "from": self.edge.source,
            "to": self.edge.target,
            "field": self.edge.field,
            "kind": self.edge.kind,
            "label": self.edge.label,
            "points": [[round(x, 1), round(y, 1)] for x, y in self.points],
            "back": self.back,
        }


@dataclass(slots=True)
class Layout:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: float
    height: float

    def wire(self) -> dict[str, Any]:
        return {
            "width": round(self.width, 1),
            "height": round(self.height, 1),
            "nodes": [n.wire() for n in self.nodes],
            "edges": [e.wire() for e in self.edges],
        }


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_LIMIT else text[: LABEL_LIMIT - 1] + "…"


def _edge_label(node: NodeBase, rel: str) -> tuple[str, str]:
    """(kind, label) of the edge a node names at ``rel``."""
    if rel.startswith("branches[") and isinstance(node, ConditionNode):
        index = int(rel[len("branches[") : rel.index("]")])
        return "branch", _short(node.branches[index].when)
    if rel.startswith("intents[") and isinstance(node, AiNode):
        index = int(rel[len("intents[") : rel.index("]")])
        return "intent", _short(node.intents[index].name)
    if rel == "fallback.next":
        return "fallback", "fallback"
    kinds = {"next": "next", "default": "default", "onInvalid": "invalid", "onTimeout": "timeout"}
    kind = kinds.get(rel, rel)
    return kind, "" if kind == "next" else kind


def edges(flow: Flow) -> list[Edge]:
    """Every edge of the flow, in node order, to nodes that exist (a dangling target
    is a validation error, not something to draw)."""
    found: list[Edge] = []
    for node in flow.nodes:
        for rel, target in node.targets():
            if flow.node(target) is None:
                continue
            kind, label = _edge_label(node, rel)
            found.append(Edge(node.id, target, rel, kind, label))
    return found


def node_label(node: NodeBase) -> str:
    if isinstance(node, JumpNode):
        return _short(node.label or f"→ {node.flow_id}")
    return _short(node.label or node.id)


@dataclass(slots=True)
class _Graph:
    """The working graph: real nodes and waypoints, with layers and orders."""

    order: dict[int, list[str]] = field(default_factory=dict)
    layer: dict[str, int] = field(default_factory=dict)
    width: dict[str, float] = field(default_factory=dict)
    down: dict[str, list[str]] = field(default_factory=dict)
    up: dict[str, list[str]] = field(default_factory=dict)
    x: dict[str, float] = field(default_factory=dict)

    def link(self, a: str, b: str) -> None:
        self.down.setdefault(a, []).append(b)
        self.up.setdefault(b, []).append(a)


def _back_edges(flow: Flow, all_edges: list[Edge]) -> set[int]:
    """Indexes of the edges to draw up the side: those that close a cycle, found by DFS
    from ``start`` (then from any node not reached, in flow order), and those from a
    node ``start`` does not reach into one it does (so ``start`` stays on top)."""
    out: dict[str, list[int]] = {}
    for i, e in enumerate(all_edges):
        out.setdefault(e.source, []).append(i)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    back: set[int] = set()
    from_start: set[str] = set()
    for root in [flow.start, *(n.id for n in flow.nodes)]:
        if root in state or flow.node(root) is None:
            continue
        stack: list[tuple[str, Iterator[int]]] = [(root, iter(out.get(root, [])))]
        state[root] = 1
        while stack:
            node_id, it = stack[-1]
            step = next(it, None)
            if step is None:
                state[node_id] = 2
                stack.pop()
                continue
            target = all_edges[step].target
            seen = state.get(target)
            if seen == 1 or target in from_start:
                back.add(step)
            elif seen is None:
                state[target] = 1
                stack.append((target, iter(out.get(target, []))))
        if root == flow.start:
            from_start = set(state)
    return back


def _layers(flow: Flow, forward: list[Edge]) -> dict[str, int]:
    """Longest distance from a root over the acyclic edges (Kahn's order)."""
    ids = [n.id for n in flow.nodes]
    incoming = dict.fromkeys(ids, 0)
    for e in forward:
        incoming[e.target] += 1
    layer = dict.fromkeys(ids, 0)
    ready = [i for i in ids if incoming[i] == 0]
    # the start node first, so it sits on top even when something points at it
    ready.sort(key=lambda i: i != flow.start)
    out: dict[str, list[str]] = {}
    for e in forward:
        out.setdefault(e.source, []).append(e.target)
    while ready:
        node_id = ready.pop(0)
        for target in out.get(node_id, []):
            layer[target] = max(layer[target], layer[node_id] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return layer


def _barycentre(node_id: str, neighbours: list[str], position: dict[str, int]) -> float:
    placed = [position[n] for n in neighbours if n in position]
    return sum(placed) / len(placed) if placed else float(position.get(node_id, 0))


def _order(g: _Graph) -> None:
    """Barycentre sweeps, down then up, keeping the ordering with fewest crossings."""

    def positions() -> dict[str, int]:
        return {n: i for nodes in g.order.values() for i, n in enumerate(nodes)}

    def crossings() -> int:
        total = 0
        pos = positions()
        for rank in sorted(g.order)[:-1]:
            pairs = [(pos[a], pos[b]) for a in g.order[rank] for b in g.down.get(a, [])]
            total += sum(
                1
                for i, (a1, b1) in enumerate(pairs)
                for a2, b2 in pairs[i + 1 :]
                if (a1 - a2) * (b1 - b2) < 0
            )
        return total

    best = {r: list(ns) for r, ns in g.order.items()}
    best_crossings = crossings()
    ranks = sorted(g.order)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        for rank in ranks[1:] if downward else list(reversed(ranks))[1:]:
            pos = positions()
            neighbours = g.up if downward else g.down
            g.order[rank].sort(key=lambda n: _barycentre(n, neighbours.get(n, []), pos))
        now = crossings()
        if now < best_crossings:
            best, best_crossings = {r: list(ns) for r, ns in g.order.items()}, now
    g.order = best


def _place_x(g: _Graph) -> None:
    """Pack each layer, then rounds of: pull every node to its neighbours' centre,
    and separate the layer to the minimum gaps by the mean of a left-to-right and a
    right-to-left pass (both keep the gaps, so their mean does; it does not drift)."""
    for nodes in g.order.values():
        x = 0.0
        for n in nodes:
            g.x[n] = x + g.width[n] / 2
            x += g.width[n] + GAP_X
    ranks = sorted(g.order)
    for sweep in range(SWEEPS + 1):
        downward = sweep % 2 == 0
        for rank in ranks if downward else list(reversed(ranks)):
            nodes = g.order[rank]
            for n in nodes:
                around = (
                    [*g.up.get(n, []), *g.down.get(n, [])]
                    if sweep == SWEEPS
                    else (g.up if downward else g.down).get(n, [])
                )
                if around:
                    g.x[n] = sum(g.x[m] for m in around) / len(around)
            _separate(g, nodes)
    lowest = min(g.x[n] - g.width[n] / 2 for n in g.x)
    for n in g.x:
        g.x[n] += MARGIN - lowest


def _separate(g: _Graph, nodes: list[str]) -> None:
    def gap(a: str, b: str) -> float:
        return (g.width[a] + g.width[b]) / 2 + GAP_X

    rightward = [g.x[n] for n in nodes]
    for i in range(1, len(nodes)):
        rightward[i] = max(rightward[i], rightward[i - 1] + gap(nodes[i - 1], nodes[i]))
    leftward = [g.x[n] for n in nodes]
    for i in range(len(nodes) - 2, -1, -1):
        leftward[i] = min(leftward[i], leftward[i + 1] - gap(nodes[i], nodes[i + 1]))
    for n, a, b in zip(nodes, rightward, leftward, strict=True):
        g.x[n] = (a + b) / 2


def layout(flow: Flow) -> Layout:
    """Place the flow's nodes top to bottom and route its edges."""
    all_edges = edges(flow)
    back = _back_edges(flow, all_edges)
    forward = [
        Edge(e.target, e.source, e.field, e.kind, e.label) if i in back else e
        for i, e in enumerate(all_edges)
        if e.source != e.target
    ]
    layer = _layers(flow, forward)
    g = _Graph(layer=dict(layer))
    for n in flow.nodes:
        g.width[n.id] = NODE_WIDTH
        g.order.setdefault(layer[n.id], []).append(n.id)
    routes: list[list[str]] = []  # the chain of ids each forward edge passes through
    for k, e in enumerate(forward):
        chain = [e.source]
        for rank in range(layer[e.source] + 1, layer[e.target]):
            waypoint = f"\0{k}:{rank}"
            g.layer[waypoint], g.width[waypoint] = rank, WAYPOINT_WIDTH
            g.order.setdefault(rank, []).append(waypoint)
            chain.append(waypoint)
        chain.append(e.target)
        for a, b in itertools.pairwise(chain):
            g.link(a, b)
        routes.append(chain)
    _order(g)
    _place_x(g)

    def top(rank: int) -> float:
        return MARGIN + rank * (NODE_HEIGHT + GAP_Y)

    right = max(g.x[n] + g.width[n] / 2 for n in g.x)
    nodes_by_id = {n.id: n for n in flow.nodes}
    placed = [
        PlacedNode(n.id, n.type, node_label(n), g.x[n.id] - NODE_WIDTH / 2, top(layer[n.id]))
        for n in (nodes_by_id[i] for nodes in g.order.values() for i in nodes if i in nodes_by_id)
    ]
    placed.sort(key=lambda p: (p.y, p.x))
    drawn: list[PlacedEdge] = []
    lane = 0
    k = 0
    for i, e in enumerate(all_edges):
        if e.source == e.target:  # a node that sends back to itself (re-ask): a loop
            x, y = g.x[e.source] + NODE_WIDTH / 2, top(layer[e.source])
            points = [(x, y + 14), (x + 22, y + 8), (x + 22, y + 44), (x, y + 38)]
            drawn.append(PlacedEdge(e, points, True))
            continue
        chain = routes[k]
        k += 1
        if i in back:
            lane += 1
            out_x = right + lane * LANE
            src_y = top(layer[e.source]) + NODE_HEIGHT / 2
            dst_y = top(layer[e.target]) + NODE_HEIGHT / 2
            points = [
                (g.x[e.source] + NODE_WIDTH / 2, src_y),
                (out_x, src_y),
                (out_x, dst_y),
                (g.x[e.target] + NODE_WIDTH / 2, dst_y),
            ]
            drawn.append(PlacedEdge(e, points, True))
            continue
        points = [(g.x[chain[0]], top(g.layer[chain[0]]) + NODE_HEIGHT)]
        points += [(g.x[w], top(g.layer[w]) + NODE_HEIGHT / 2) for w in chain[1:-1]]
        points.append((g.x[chain[-1]], top(g.layer[chain[-1]])))
        drawn.append(PlacedEdge(e, points, False))
    height = top(max(layer.values(), default=0)) + NODE_HEIGHT + MARGIN
    width = right + MARGIN + lane * LANE + (LANE if lane else 0)
    return Layout(placed, drawn, width, height)
