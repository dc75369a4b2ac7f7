"""A flow as a drawable graph: its edges, labelled, and a layered layout.

The debugger draws the flow an execution runs; the layout is computed here, in
Python, rather than in the browser so that it is typed, tested and the same for
every client. It is the classic layered (Sugiyama) scheme, kept small:

1. edges that close a loop (found by a depth-first walk from ``start``) are
   turned around, so the rest is acyclic;
2. each node's layer is its longest distance from a root, so every forward edge
   points down;
3. an edge spanning several layers gets a waypoint per layer crossed, which then
   takes part in the ordering like a narrow node, so that edges pass beside nodes,
   not through them; the edges into one node share their waypoints (they merge as
   they near it: a flow's many ways into one handoff take one slot per layer). At
   most :data:`MAX_WAYPOINTS` layers crossed are routed so in the whole drawing,
   shortest edges first; an edge beyond that runs down a lane left of the drawing;
4. nodes within a layer are ordered by the barycentre of their neighbours, in
   sweeps down and up, keeping the order with the fewest crossings;
5. x positions are pulled towards the neighbours' centre and pushed apart to the
   minimum gaps, and every layer is then kept within the width of the widest.

Edges are drawn so that none passes through a node it does not join: a forward
edge runs straight down through each layer it crosses, in its waypoint's slot, and
slants only in the gaps between layers, :data:`STUB` clear of them. A loop-closing
("back") edge leaves its source's bottom, runs right in the gap below it to a lane
past every node, up the lane, left in the gap above its target and into its top;
loops whose runs do not meet, or that close into the same node, share a lane.

Why these sizes: the debugger's *Fit* shows the whole width of the drawing without
letting its smallest text (14 px in the drawing) fall under 10 px on screen, so the
drawing must stay narrow: nodes 160 wide, waypoints a few pixels, shared lanes.
The 50-node flow of ``tests/flows/telecom_support.json`` is under 1,700 wide.

Flows are untrusted and may be as large as validation allows (5,000 nodes, 1 MiB:
tens of thousands of edges), so every step is linear or ``n log n`` in nodes, edges
and waypoints, and the waypoints are bounded: drawn naively, a 5,000-node chain
whose every node also points at the end needs 12.5 million waypoints, and counting
crossings pair by pair is quadratic in a layer's edges. The largest flows lay out
in under a second (``bench/graph.py``). What a small flow looks like is unchanged
by these bounds: it stays far below them. A caller with a time budget passes
``stop``, polled all along; when it answers true the layout ends with
:class:`~trilha.errors.LimitExceeded`.

Why not a layout library (measured for issue 20): ELK (elkjs 0.12.1, the layered
algorithm in JavaScript, run in the page) lays the 50-node flow out in 0.26 s warm
(0.8 s cold) to a drawing about as wide as this one (2,552 px for 176-px nodes), but
on the 5,000-node chain and loop shapes of ``tests/graph_shapes.py`` it fails with
"Maximum call stack size exceeded" in V8 (Chromium's engine), and it is 1.6 MB to
ship with the page; bounding it would mean a Web Worker killed at a deadline and a
second layout to test. Graphviz's ``dot`` is a program to install and ship beside
a pip package, not a package, and bounding its time on an untrusted graph takes
tuning of its own (``nslimit``, ``mclimit``, a process to kill). grandalf, the pure
Python Sugiyama, makes a dummy node per layer crossed. Ours is small, tested
against the drawn geometry, bounded, and keeps the public answer's shape.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from trilha.core.flow import AiNode, ConditionNode, Flow, JumpNode, NodeBase
from trilha.errors import LimitExceeded

NODE_WIDTH = 160.0
NODE_HEIGHT = 64.0
#: the width a waypoint of a long edge takes in its layer (the edge runs down its middle)
WAYPOINT_WIDTH = 6.0
#: between two nodes of a layer; :data:`WAYPOINT_GAP` between a waypoint and anything
GAP_X = 24.0
WAYPOINT_GAP = 8.0
GAP_Y = 56.0
#: a forward edge runs straight down this far out of a layer and into the next: it
#: crosses between slots only in the gap, clear of the nodes' corners
STUB = 8.0
MARGIN = 24.0
#: the width of a lane: back edges run up lanes right of the nodes, edges without
#: waypoints down lanes left of them
LANE = 14.0
SWEEPS = 6
LABEL_LIMIT = 40
#: waypoints one drawing makes at most (each is an item of the ordering, like a node:
#: twice the largest flow's nodes); the examples need tens
MAX_WAYPOINTS = 10_000
#: from this many nodes on, back edges share lanes (every flow: each lane widens the
#: drawing, and a narrower drawing is read at a larger scale; a lane per loop is kept
#: for callers that pass a larger figure)
SHARED_LANES_FROM = 0
#: units of work between two polls of ``stop``
POLL_EVERY = 1_024
#: nodes or edges encoded per call to orjson
_ENCODE_CHUNK = 256

#: asked now and then while laying out: true ends the layout (LimitExceeded)
Stop = Callable[[], bool]


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
    #: a tuple of tuples of floats, which the garbage collector stops tracking (a list
    #: it would walk at every full collection: a large flow has tens of thousands)
    points: tuple[tuple[float, float], ...]
    back: bool

    def wire(self) -> dict[str, Any]:
        return {
            "from": self.edge.source,
            "to": self.edge.target,
            "field": self.edge.field,
            "kind": self.edge.kind,
            "label": self.edge.label,
            "points": tuple([(round(x, 1), round(y, 1)) for x, y in self.points]),
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

    def encode(self) -> bytes:
        """:meth:`wire` as JSON, a few hundred nodes or edges per call to orjson: one
        call over a large flow's megabytes would hold the interpreter lock for tens of
        milliseconds, while the event loop of a server waits for it."""

        def items(parts: list[PlacedNode] | list[PlacedEdge]) -> bytes:
            chunks = [
                orjson.dumps([p.wire() for p in parts[i : i + _ENCODE_CHUNK]])[1:-1]
                for i in range(0, len(parts), _ENCODE_CHUNK)
            ]
            return b"[" + b",".join(chunks) + b"]"

        size = orjson.dumps({"width": round(self.width, 1), "height": round(self.height, 1)})
        return b"".join(
            [size[:-1], b',"nodes":', items(self.nodes), b',"edges":', items(self.edges), b"}"]
        )


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
    if rel.startswith("branches."):  # a subflow node's, by how its sub-flow ended
        return "branch", rel.removeprefix("branches.")
    kinds = {"next": "next", "default": "default", "onInvalid": "invalid", "onTimeout": "timeout"}
    kind = kinds.get(rel, rel)
    return kind, "" if kind == "next" else kind


def edges(flow: Flow) -> list[Edge]:
    """Every edge of the flow, in node order, to nodes that exist (a dangling target
    is a validation error, not something to draw)."""
    return _edges(flow, _Budget(None))


def _edges(flow: Flow, budget: _Budget) -> list[Edge]:
    found: list[Edge] = []
    for node in flow.nodes:
        for rel, target in node.targets():
            budget.spend()
            if flow.node(target) is None:
                continue
            kind, label = _edge_label(node, rel)
            found.append(Edge(node.id, target, rel, kind, label))
    return found


def node_label(node: NodeBase) -> str:
    if isinstance(node, JumpNode):
        return _short(node.label or f"→ {node.flow_id}")
    return _short(node.label or node.id)


class _Budget:
    """Counts work and polls ``stop`` every :data:`POLL_EVERY` units of it."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: Stop | None) -> None:
        self.stop = stop
        self.done = 0

    def spend(self, work: int = 1) -> None:
        self.done += work
        if self.done >= POLL_EVERY:
            self.done = 0
            if self.stop is not None and self.stop():
                raise LimitExceeded("the layout was stopped before it finished")


@dataclass(slots=True)
class _Graph:
    """The working graph: the flow's nodes (numbered in flow order) and then the
    waypoints, with their layers, their order in each layer and their x positions.
    Numbers and lists rather than ids and dicts: the layout is a few passes over
    tens of thousands of these."""

    #: per layer, its members left to right
    order: list[list[int]]
    layer: list[int] = field(default_factory=list)
    #: half of each member's width, plus half the gap it keeps from its neighbours
    half: list[float] = field(default_factory=list)
    #: that half gap
    pad: list[float] = field(default_factory=list)
    down: list[list[int]] = field(default_factory=list)
    up: list[list[int]] = field(default_factory=list)
    x: list[float] = field(default_factory=list)

    def add(self, rank: int, width: float, gap: float) -> int:
        self.layer.append(rank)
        self.half.append((width + gap) / 2)
        self.pad.append(gap / 2)
        self.down.append([])
        self.up.append([])
        self.x.append(0.0)
        self.order[rank].append(len(self.layer) - 1)
        return len(self.layer) - 1

    def link(self, a: int, b: int) -> None:
        self.down[a].append(b)
        self.up[b].append(a)


def _back_edges(
    start: int | None, count: int, all_edges: list[tuple[int, int]], budget: _Budget
) -> set[int]:
    """Indexes of the edges to draw up the side: those that close a cycle, found by DFS
    from ``start`` (then from any node not reached, in flow order), and those from a
    node ``start`` does not reach into one it does (so ``start`` stays on top)."""
    out: list[list[int]] = [[] for _ in range(count)]
    for i, (source, _) in enumerate(all_edges):
        budget.spend()
        out[source].append(i)
    state = [0] * count  # 1: on the stack, 2: done
    back: set[int] = set()
    from_start = [False] * count
    for root in [*([] if start is None else [start]), *range(count)]:
        if state[root]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(out[root]))]
        state[root] = 1
        while stack:
            budget.spend()
            node, it = stack[-1]
            step = next(it, None)
            if step is None:
                state[node] = 2
                stack.pop()
                continue
            target = all_edges[step][1]
            seen = state[target]
            if seen == 1 or from_start[target]:
                back.add(step)
            elif not seen:
                state[target] = 1
                stack.append((target, iter(out[target])))
        if root == start:
            from_start = [bool(s) for s in state]
    return back


def _layers(
    start: int | None, count: int, forward: list[tuple[int, int]], budget: _Budget
) -> list[int]:
    """Longest distance from a root over the acyclic edges (Kahn's order)."""
    incoming = [0] * count
    out: list[list[int]] = [[] for _ in range(count)]
    for source, target in forward:
        incoming[target] += 1
        out[source].append(target)
    layer = [0] * count
    # the start node first, so it sits on top even when something points at it
    ready = deque(sorted((i for i in range(count) if incoming[i] == 0), key=lambda i: i != start))
    while ready:
        node = ready.popleft()
        targets = out[node]
        budget.spend(1 + len(targets))
        for target in targets:
            layer[target] = max(layer[target], layer[node] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return layer


def _with_waypoints(spans: list[int], most: int, budget: _Budget) -> list[bool]:
    """Which edges (by their number of layers crossed) get waypoints: all of them when
    they fit in ``most``, else the shortest first while they fit (a short edge routed
    among the nodes reads better than a long one)."""
    if sum(spans) <= most:
        return [True] * len(spans)
    chosen = [False] * len(spans)
    # shortest first, in flow order among equals: by buckets, as sorting tens of
    # thousands of pairs would hold the interpreter lock in one call
    by_span: dict[int, list[int]] = {}
    for k, span in enumerate(spans):
        by_span.setdefault(span, []).append(k)
    budget.spend(len(spans))
    used = 0
    for span in sorted(by_span):
        for k in by_span[span]:
            if used + span > most:
                return chosen
            used += span
            chosen[k] = True
    return chosen


def _inversions(values: list[int]) -> int:
    """Pairs ``i < j`` with ``values[i] > values[j]``, counted with a Fenwick tree."""
    size = max(values, default=-1) + 1
    tree = [0] * (size + 1)
    count = 0
    for seen, value in enumerate(values):
        i, at_most = value + 1, 0
        while i > 0:
            at_most += tree[i]
            i -= i & -i
        count += seen - at_most
        i = value + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _order(g: _Graph, budget: _Budget) -> None:
    """Barycentre sweeps, down then up, keeping the ordering with fewest crossings."""
    pos = [0] * len(g.layer)
    for nodes in g.order:
        for i, n in enumerate(nodes):
            pos[n] = i
    at = pos.__getitem__

    def crossings() -> int:
        """Edges between two layers cross when their ends are in opposite orders:
        taken by their upper end left to right, then by their lower end, the
        crossings are the inversions of their lower ends."""
        total = 0
        for nodes in g.order[:-1]:
            lower = [b for a in nodes for b in sorted(map(at, g.down[a]))]
            budget.spend(1 + len(lower))
            total += _inversions(lower)
        return total

    best = [list(nodes) for nodes in g.order]
    best_crossings = crossings()
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        neighbours = g.up if downward else g.down

        def barycentre(n: int, neighbours: list[list[int]] = neighbours) -> float:
            around = neighbours[n]
            return sum(map(at, around)) / len(around) if around else float(pos[n])

        for nodes in g.order[1:] if downward else list(reversed(g.order))[1:]:
            budget.spend(1 + len(nodes))
            nodes.sort(key=barycentre)
            for i, n in enumerate(nodes):
                pos[n] = i
        now = crossings()
        if now < best_crossings:
            best, best_crossings = [list(nodes) for nodes in g.order], now
    g.order = best


def _place_x(g: _Graph, budget: _Budget) -> None:
    """Pack each layer, then rounds of: pull every node to its neighbours' centre,
    and separate the layer to the minimum gaps by the mean of a left-to-right and a
    right-to-left pass (both keep the gaps, so their mean does; it does not drift)."""
    x, half = g.x, g.half
    for nodes in g.order:
        left = 0.0
        for n in nodes:
            x[n] = left + half[n]
            left += 2 * half[n]
    at = x.__getitem__
    for sweep in range(SWEEPS + 1):
        downward = sweep % 2 == 0
        for nodes in g.order if downward else list(reversed(g.order)):
            budget.spend(1 + len(nodes))
            for n in nodes:
                around = (
                    [*g.up[n], *g.down[n]] if sweep == SWEEPS else (g.up if downward else g.down)[n]
                )
                if around:
                    x[n] = sum(map(at, around)) / len(around)
            _separate(x, half, nodes)
    # no layer wider than the widest needs to be: each is kept within the span the
    # layer of the most room takes (a layer pulled sideways by its neighbours would
    # widen the drawing, and a narrower drawing is read at a larger scale)
    widest = max(g.order, key=lambda nodes: sum(half[n] for n in nodes))
    if widest:
        lo, hi = x[widest[0]] - half[widest[0]], x[widest[-1]] + half[widest[-1]]
        for nodes in g.order:
            budget.spend(1 + len(nodes))
            _clamp(x, half, nodes, lo, hi)
    lowest = min(x[n] - half[n] + g.pad[n] for n in range(len(x)))
    for n in range(len(x)):
        x[n] += MARGIN - lowest


def _separate(x: list[float], half: list[float], nodes: list[int]) -> None:
    rightward = [x[n] for n in nodes]
    for i in range(1, len(nodes)):
        least = rightward[i - 1] + half[nodes[i - 1]] + half[nodes[i]]
        if rightward[i] < least:
            rightward[i] = least
    leftward = [x[n] for n in nodes]
    for i in range(len(nodes) - 2, -1, -1):
        most = leftward[i + 1] - half[nodes[i]] - half[nodes[i + 1]]
        if leftward[i] > most:
            leftward[i] = most
    for n, a, b in zip(nodes, rightward, leftward, strict=True):
        x[n] = (a + b) / 2


def _clamp(x: list[float], half: list[float], nodes: list[int], lo: float, hi: float) -> None:
    """Move a separated layer within ``[lo, hi]`` (wide enough for it), keeping its
    gaps: pushed right off ``lo``, then left off ``hi``."""
    least = lo
    for n in nodes:
        x[n] = max(x[n], least + half[n])
        least = x[n] + half[n]
    most = hi
    for n in reversed(nodes):
        x[n] = min(x[n], most - half[n])
        most = x[n] - half[n]


def _shared_lanes(spans: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """Lanes (0, 1, ...) for groups of edges given as ``(first layer, last layer, group)``
    (a group's edges run into one node: they share its lane), fewest lanes such that
    two groups in one lane never overlap, not even at an end (interval partitioning:
    by first layer, each into the lane that came free earliest)."""
    lanes: dict[int, int] = {}
    free: list[tuple[int, int]] = []  # (last layer of the lane's latest group, lane)
    count = 0
    for first, last, group in sorted(spans):
        if free and free[0][0] < first:
            lane = heapq.heappop(free)[1]
        else:
            lane, count = count, count + 1
        lanes[group] = lane
        heapq.heappush(free, (last, lane))
    return lanes


def _groups(spans: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The spans of edges into one node merged into one: ``(first, last, node)``."""
    merged: dict[int, tuple[int, int]] = {}
    for first, last, node in spans:
        known = merged.get(node)
        merged[node] = (
            (first, last) if known is None else (min(first, known[0]), max(last, known[1]))
        )
    return [(first, last, node) for node, (first, last) in merged.items()]


def layout(
    flow: Flow,
    *,
    stop: Stop | None = None,
    max_waypoints: int = MAX_WAYPOINTS,
    shared_lanes_from: int = SHARED_LANES_FROM,
) -> Layout:
    """Place the flow's nodes top to bottom and route its edges; ``stop`` is asked now
    and then whether to give up (then :class:`~trilha.errors.LimitExceeded`)."""
    budget = _Budget(stop)
    all_edges = _edges(flow, budget)
    number = {n.id: i for i, n in enumerate(flow.nodes)}
    # a flow built without validation may name a start it does not have
    count, start = len(flow.nodes), number.get(flow.start)
    ends = [(number[e.source], number[e.target]) for e in all_edges]
    back = _back_edges(start, count, ends, budget)
    # each edge of the flow as it points in the layering (loops turned around), in
    # order; a node's edge to itself has none
    forward: list[tuple[int, int] | None] = [
        None if a == b else (b, a) if i in back else (a, b) for i, (a, b) in enumerate(ends)
    ]
    layer = _layers(start, count, [f for f in forward if f is not None], budget)
    g = _Graph(order=[[] for _ in range(max(layer, default=0) + 1)])
    for n in range(count):
        budget.spend()
        g.add(layer[n], NODE_WIDTH, GAP_X)
    routed = [f for f in forward if f is not None]
    spans = [layer[b] - layer[a] - 1 for a, b in routed]
    chosen = iter(_with_waypoints(spans, max_waypoints, budget))
    # the chain of nodes each edge passes through; None: a loop on one node, or an
    # edge without waypoints, which runs down a lane instead. The edges into one node
    # share their waypoints in each layer they cross (they merge as they near it): a
    # flow's many ways to one handoff or menu take one slot in a layer, not one each
    routes: list[list[int] | None] = []
    waypoint: dict[tuple[int, int], int] = {}
    linked: set[tuple[int, int]] = set()
    for f in forward:
        if f is None or not next(chosen):
            routes.append(None)
            continue
        a, b = f
        chain = [a]
        for rank in range(layer[a] + 1, layer[b]):
            w = waypoint.get((b, rank))
            if w is None:
                w = waypoint[b, rank] = g.add(rank, WAYPOINT_WIDTH, WAYPOINT_GAP)
            chain.append(w)
        chain.append(b)
        budget.spend(len(chain))
        for u, v in itertools.pairwise(chain):
            if (u, v) not in linked:
                linked.add((u, v))
                g.link(u, v)
        routes.append(chain)
    _order(g, budget)
    _place_x(g, budget)
    x = g.x

    # edges without waypoints run down lanes left of the nodes, those into one node in one
    laned: list[tuple[int, int, int]] = []
    for i, ((a, b), route) in enumerate(zip(ends, routes, strict=True)):
        budget.spend()
        if route is None and a != b and i not in back:
            laned.append((layer[a], layer[b], b))
    left = _shared_lanes(_groups(laned))
    left_lanes = max(left.values(), default=-1) + 1
    if left_lanes:
        shift = (left_lanes + 1) * LANE
        for n in range(len(x)):
            x[n] += shift
    # back edges run up lanes right of the nodes, shared where their runs (from the gap
    # above the target to the gap below the source) do not meet
    shared = (
        _shared_lanes(
            _groups(
                (layer[b], layer[a] + 1, b) for i, (a, b) in enumerate(ends) if i in back and a != b
            )
        )
        if count >= shared_lanes_from
        else None
    )

    last = max(layer, default=0)

    def top(rank: int) -> float:
        return MARGIN + rank * (NODE_HEIGHT + GAP_Y)

    def under(rank: int, step: float) -> float:
        """A height in the gap below layer ``rank`` (the bottom margin's middle below
        the last), ``step`` off its middle: in a gap, a line crosses no node."""
        bottom = top(rank) + NODE_HEIGHT
        return bottom + MARGIN / 2 if rank == last else bottom + GAP_Y / 2 + step

    def over(rank: int, step: float) -> float:
        return top(rank) - MARGIN / 2 if rank == 0 else top(rank) - GAP_Y / 2 + step

    right = max(x[n] + g.half[n] - g.pad[n] for n in range(len(x)))
    placed = [
        PlacedNode(node.id, node.type, node_label(node), x[n] - NODE_WIDTH / 2, top(layer[n]))
        for n, node in enumerate(flow.nodes)
    ]
    placed.sort(key=lambda p: (p.y, p.x))
    drawn: list[PlacedEdge] = []
    lane = 0
    drop = GAP_Y / 3
    for i, (e, (a, b), route) in enumerate(zip(all_edges, ends, routes, strict=True)):
        budget.spend()
        if a == b:  # a node that sends back to itself (re-ask): a loop beside it
            side, y = x[a] + NODE_WIDTH / 2, top(layer[a])
            high, low = y + NODE_HEIGHT / 4, y + NODE_HEIGHT * 3 / 4
            loop = ((side, high), (side + 14, high - 6), (side + 14, low + 6), (side, low))
            drawn.append(PlacedEdge(e, loop, True))
        elif i in back:
            # out of the source's bottom into the gap below it, right to a lane past
            # every node, up it, left in the gap above the target, into the target's
            # top: around the side, never across a node. The ends sit right of the
            # middle, where forward edges meet the node, so the two do not merge
            lane = shared[b] + 1 if shared is not None else lane + 1
            out_x = right + lane * LANE
            step = ((lane % 3) - 1) * 6.0
            below, above = under(layer[a], step), over(layer[b], step)
            src_x, dst_x = x[a] + NODE_WIDTH / 4, x[b] + NODE_WIDTH / 4
            up = (
                (src_x, top(layer[a]) + NODE_HEIGHT),
                (src_x, below),
                (out_x, below),
                (out_x, above),
                (dst_x, above),
                (dst_x, top(layer[b])),
            )
            drawn.append(PlacedEdge(e, up, True))
        elif route is None:  # down its lane on the left, turning in the gaps between layers
            lane_x = MARGIN + (left_lanes - left[b]) * LANE
            src_y, dst_y = top(layer[a]) + NODE_HEIGHT, top(layer[b])
            down = (
                (x[a], src_y),
                (x[a], src_y + drop),
                (lane_x, src_y + drop),
                (lane_x, dst_y - drop),
                (x[b], dst_y - drop),
                (x[b], dst_y),
            )
            drawn.append(PlacedEdge(e, down, False))
        else:
            drawn.append(PlacedEdge(e, _through(route, x, g.layer, top), False))
    lanes = max(shared.values(), default=-1) + 1 if shared is not None else lane
    height = top(last) + NODE_HEIGHT + MARGIN
    width = right + MARGIN + lanes * LANE + (LANE if lanes else 0)
    return Layout(placed, drawn, width, height)


def _through(
    route: list[int], x: list[float], layers: list[int], top: Callable[[int], float]
) -> tuple[tuple[float, float], ...]:
    """A forward edge's points: straight down through each layer it crosses, in its
    waypoint's slot, and across to the next slot only in the gap between two layers,
    :data:`STUB` clear of both (where there is no node to cross, nor graze); straight
    down out of its source and into its target. Points in a straight vertical run are
    left out."""
    a, b = route[0], route[-1]
    points = [(x[a], top(layers[a]) + NODE_HEIGHT), (x[a], top(layers[a]) + NODE_HEIGHT + STUB)]
    for w in route[1:-1]:
        points.append((x[w], top(layers[w]) - STUB))
        points.append((x[w], top(layers[w]) + NODE_HEIGHT + STUB))
    points.append((x[b], top(layers[b]) - STUB))
    points.append((x[b], top(layers[b])))
    kept = [points[0]]
    for k in range(1, len(points) - 1):
        if not (kept[-1][0] == points[k][0] == points[k + 1][0]):
            kept.append(points[k])
    kept.append(points[-1])
    return tuple(kept)
