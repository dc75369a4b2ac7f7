"""The flow as a drawable graph: labelled edges and a layered layout whose nodes never
overlap, whose forward edges run downwards from the source's bottom to the target's
top, whose loops are drawn as back edges, and which is the same every time."""

from __future__ import annotations

import bisect
import copy
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_shapes import SHAPES, back_edges, long_edges, size
from trilha.core.flow import MAX_FLOW_BYTES, MAX_NODES, Flow, load_flow, parse_flow
from trilha.core.graph import (
    GAP_Y,
    LABEL_LIMIT,
    LANE,
    MARGIN,
    MAX_WAYPOINTS,
    NODE_HEIGHT,
    NODE_WIDTH,
    POLL_EVERY,
    STUB,
    Edge,
    Layout,
    PlacedNode,
    edges,
    layout,
)
from trilha.errors import LimitExceeded

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
EPS = 1e-6
#: how far an edge keeps from a node it does not start or end at (check_clear)
CLEARANCE = 4.0
#: a realistic 50-node flow: menus, http calls with fallbacks, loops back, handoffs
FLOWS = Path(__file__).resolve().parents[1] / "flows"


def example(path: Path) -> Flow:
    return load_flow(json.loads(path.read_text(encoding="utf-8")))


def has_cycle(flow: Flow) -> bool:
    """Any directed cycle (a self-loop included), by a plain three-colour DFS."""
    out: dict[str, list[str]] = {n.id: [] for n in flow.nodes}
    for e in edges(flow):
        out[e.source].append(e.target)
    colour: dict[str, int] = {}

    def visit(node: str) -> bool:
        colour[node] = 1
        for nxt in out[node]:
            if colour.get(nxt) == 1 or (nxt not in colour and visit(nxt)):
                return True
        colour[node] = 2
        return False

    return any(n not in colour and visit(n) for n in out)


def reachable(flow: Flow) -> set[str]:
    out: dict[str, list[str]] = {}
    for e in edges(flow):
        out.setdefault(e.source, []).append(e.target)
    seen: set[str] = set()
    stack = [flow.start]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(out.get(node, []))
    return seen


def overlap(a: PlacedNode, b: PlacedNode) -> bool:
    return (
        a.x < b.x + b.width - EPS
        and b.x < a.x + a.width - EPS
        and a.y < b.y + b.height - EPS
        and b.y < a.y + a.height - EPS
    )


def closes_a_cycle(flow: Flow, edge: Edge) -> bool:
    """``source -> target`` lies on a cycle: the target reaches the source."""
    out: dict[str, list[str]] = {}
    for e in edges(flow):
        out.setdefault(e.source, []).append(e.target)
    seen: set[str] = set()
    stack = [edge.target]
    while stack:
        node = stack.pop()
        if node == edge.source:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(out.get(node, []))
    return False


def check_back_edges(flow: Flow, drawn: Layout) -> None:
    """Back edges (drawn up the side) are the loops, and the edges from a node the
    start does not reach into one it does (so that the start stays on top): with every
    node reachable, there are back edges iff the flow has a cycle."""
    reached = reachable(flow)
    back = [d.edge for d in drawn.edges if d.back]
    into_reached = [e for e in edges(flow) if e.source not in reached and e.target in reached]
    assert all(e in back for e in into_reached)
    for e in back:
        assert e in into_reached or closes_a_cycle(flow, e), e
    if has_cycle(flow):
        assert back
    else:
        assert back == into_reached
    if reached == {n.id for n in flow.nodes}:
        assert bool(back) is has_cycle(flow)
    # what is left is acyclic: the layers are made of it
    assert not _cyclic(flow, [d.edge for d in drawn.edges if not d.back])


def crosses(a: tuple[float, float], b: tuple[float, float], p: PlacedNode, margin: float) -> bool:
    """Whether the segment ``a``-``b`` enters ``p``'s box grown by ``margin`` on every
    side (Liang-Barsky clipping: the part of the segment inside the box is not empty)."""
    (x0, y0), (x1, y1) = a, b
    low, high = 0.0, 1.0
    for step, room in (
        (x0 - x1, x0 - (p.x - margin)),
        (x1 - x0, p.x + p.width + margin - x0),
        (y0 - y1, y0 - (p.y - margin)),
        (y1 - y0, p.y + p.height + margin - y0),
    ):
        if step == 0:
            if room < 0:
                return False
        elif step < 0:
            low = max(low, room / step)
        else:
            high = min(high, room / step)
    return low < high


def check_clear(drawn: Layout, margin: float = CLEARANCE) -> None:
    """No segment of an edge passes within ``margin`` of a node that is not one of its
    ends (its own ends it leaves and enters through their sides). Each segment is
    checked against the nodes of the layers its heights reach (found by bisection),
    not all of them: a large flow has thousands of each."""
    rows: dict[float, list[PlacedNode]] = {}
    for p in drawn.nodes:
        rows.setdefault(p.y, []).append(p)
    tops = sorted(rows)
    for d in drawn.edges:
        for a, b in itertools.pairwise(d.points):
            low = bisect.bisect_left(tops, min(a[1], b[1]) - NODE_HEIGHT - margin)
            high = bisect.bisect_right(tops, max(a[1], b[1]) + margin)
            for top in tops[low:high]:
                for p in rows[top]:
                    if p.id not in (d.edge.source, d.edge.target):
                        assert not crosses(a, b, p, margin), (d.edge, a, b, p.id)


def inside(x: float, y: float, p: PlacedNode) -> bool:
    return p.x + EPS < x < p.x + p.width - EPS and p.y + EPS < y < p.y + p.height - EPS


def check_layout(flow: Flow, drawn: Layout, *, shared_lanes: bool = True) -> int:
    """Every geometric property the debugger relies on; ``shared_lanes``: back edges
    may share a lane where their spans do not overlap or they close into one node (the
    default; false: one lane each). Returns how many forward edges run down a lane
    (without waypoints)."""
    ids = [n.id for n in flow.nodes]
    # every node placed once, with its type
    assert sorted(p.id for p in drawn.nodes) == sorted(ids)
    placed = {p.id: p for p in drawn.nodes}
    for node in flow.nodes:
        assert placed[node.id].type == node.type
        assert (placed[node.id].width, placed[node.id].height) == (NODE_WIDTH, NODE_HEIGHT)
    # no two overlap
    for a, b in itertools.combinations(drawn.nodes, 2):
        assert not overlap(a, b), (a, b)
    # inside the drawing
    for p in drawn.nodes:
        assert p.x >= -EPS and p.x + p.width <= drawn.width + EPS, p
        assert p.y >= -EPS and p.y + p.height <= drawn.height + EPS, p
    # the start on the top layer
    assert min(p.y for p in drawn.nodes) == MARGIN
    assert placed[flow.start].y == MARGIN
    # every edge of the flow drawn exactly once
    want = Counter((e.source, e.target, e.field) for e in edges(flow))
    got = Counter((d.edge.source, d.edge.target, d.edge.field) for d in drawn.edges)
    assert got == want
    assert [d.edge for d in drawn.edges] == edges(flow)
    check_back_edges(flow, drawn)
    check_clear(drawn)
    right = max(p.x + p.width for p in drawn.nodes)
    left = min(p.x for p in drawn.nodes)
    laned = 0  # forward edges without waypoints
    lanes: list[float] = []
    spans: dict[float, list[tuple[float, float, str]]] = {}
    for d in drawn.edges:
        src, dst = placed[d.edge.source], placed[d.edge.target]
        assert len(d.points) >= 2
        for x, y in d.points:
            assert -EPS <= x <= drawn.width + EPS and -EPS <= y <= drawn.height + EPS, d
        if d.edge.source == d.edge.target:
            assert d.back
            for x, y in d.points:
                assert src.x <= x and src.y <= y <= src.y + src.height, d
            continue
        if d.back:
            # around the side: down out of the source's bottom into the gap below it,
            # right to a lane past every node, up it, left in the gap above the target,
            # down into the target's top; parallel to the axes
            assert len(d.points) == 6, d
            (x0, y0), (_, below), (lane, _), (_, above), _, (x1, y1) = d.points
            assert y0 == pytest.approx(src.y + src.height) and src.x < x0 < src.x + src.width
            assert y1 == pytest.approx(dst.y) and dst.x < x1 < dst.x + dst.width
            assert lane > right
            assert below > y0 and above < y1 and above < below  # a loop closes upwards
            for k, ((xa, ya), (xb, yb)) in enumerate(itertools.pairwise(d.points)):
                assert (xa == pytest.approx(xb)) if k % 2 == 0 else (ya == pytest.approx(yb))
            lanes.append(lane)
            spans.setdefault(lane, []).append((above, below, d.edge.target))
            continue
        (x0, y0), (x1, y1) = d.points[0], d.points[-1]
        assert y0 == pytest.approx(src.y + src.height), d  # on the source's bottom edge
        assert src.x <= x0 <= src.x + src.width, d
        assert y1 == pytest.approx(dst.y), d  # on the target's top edge
        assert dst.x <= x1 <= dst.x + dst.width, d
        ys = [y for _, y in d.points]
        assert all(b >= a - EPS for a, b in itertools.pairwise(ys)), d
        assert y1 > y0
        # its bends (waypoints, or the turns into and out of a lane) are in no node
        for x, y in d.points[1:-1]:
            assert not any(inside(x, y, p) for p in drawn.nodes), (d, x, y)
        if d.points[1][1] - y0 == pytest.approx(GAP_Y / 3):  # down a lane left of the
            # nodes: out of the source, across the gap below its layer, down the lane,
            # across the gap above the target's layer, into it; parallel to the axes
            assert len(d.points) == 6 and d.points[2][0] < left, d
            laned += 1
            for k, ((xa, ya), (xb, yb)) in enumerate(itertools.pairwise(d.points)):
                assert (xa == pytest.approx(xb)) if k % 2 == 0 else (ya == pytest.approx(yb))
            assert src.y + src.height < d.points[1][1] < d.points[3][1] < dst.y
    if not shared_lanes:
        assert len(set(lanes)) == len(lanes)
    # a forward edge's slanted stretches are in the gaps between layers, STUB clear of them
    tops = sorted({p.y for p in drawn.nodes})
    for d in drawn.edges:
        if d.back:
            continue
        for (xa, ya), (xb, yb) in itertools.pairwise(d.points):
            if xa != pytest.approx(xb):
                assert any(
                    t + NODE_HEIGHT + STUB - EPS <= min(ya, yb) and max(ya, yb) <= u - STUB + EPS
                    for t, u in itertools.pairwise(tops)
                ) or ya == pytest.approx(yb), d
    for one_lane in spans.values():  # in one lane: no overlap, but into the same node
        for (top1, bottom1, into1), (top2, bottom2, into2) in itertools.combinations(one_lane, 2):
            assert into1 == into2 or bottom1 < top2 or bottom2 < top1, one_lane
    return laned


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "path", [*EXAMPLE_FILES, FLOWS / "telecom_support.json"], ids=lambda p: p.name
)
def test_examples_lay_out(path: Path) -> None:
    """The examples and a 50-node flow: no edge within CLEARANCE of a node it does not
    join, no node outside the drawing, loops around the right-hand side (check_layout)."""
    flow = example(path)
    drawn = layout(flow)
    check_layout(flow, drawn)
    assert next(p for p in drawn.nodes if p.id == flow.start).y == MARGIN
    assert layout(example(path)).wire() == drawn.wire()


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLE_FILES} >= {"onboarding.json", "faq.json"}


def test_onboarding_drawn() -> None:
    """A known flow, checked by hand: the confirm loop is the one back edge."""
    flow = example(EXAMPLES / "onboarding.json")
    drawn = layout(flow)
    (loop,) = [d for d in drawn.edges if d.back]
    assert loop.edge == Edge("check", "ask_name", "default", "default", "default")
    layers = sorted({p.y for p in drawn.nodes})
    by_layer = {p.id: layers.index(p.y) for p in drawn.nodes}
    assert by_layer == {
        "welcome": 0,
        "ask_name": 1,
        "ask_cpf": 2,
        "ask_email": 3,
        "give_up": 3,
        "confirm": 4,
        "check": 5,
        "mark_done": 6,
        "bye": 7,
    }
    wire = drawn.wire()
    assert set(wire) == {"width", "height", "nodes", "edges"}
    assert wire["nodes"][0] == {
        "id": "welcome",
        "type": "message",
        "label": "welcome",
        "x": round(drawn.nodes[0].x, 1),
        "y": MARGIN,
        "width": NODE_WIDTH,
        "height": NODE_HEIGHT,
    }
    back = next(e for e in wire["edges"] if e["back"])
    assert {k: back[k] for k in ("from", "to", "field", "kind", "label")} == {
        "from": "check",
        "to": "ask_name",
        "field": "default",
        "kind": "default",
        "label": "default",
    }


# --------------------------------------------------------------------------- edge kinds


KINDS = {
    "id": "kinds",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "age?",
            "variable": "age",
            "validate": {"kind": "number"},
            "next": "check",
            "onInvalid": "human",
            "onTimeout": "bye",
            "fallback": {"next": "human"},
        },
        {
            "id": "check",
            "type": "condition",
            "label": "Is an adult?",
            "branches": [
                {"when": "age >= 18", "next": "adult"},
                {
                    "when": "age < 18 and age > 0 and age != 7 and age != 9 and age != 11",
                    "next": "bye",
                },
            ],
            "default": "human",
        },
        {"id": "adult", "type": "set", "variables": {"adult": True}, "next": "bye"},
        {"id": "human", "type": "handoff", "queue": "desk"},
        {"id": "bye", "type": "end", "text": "bye"},
    ],
}


def test_edge_kinds_and_labels() -> None:
    flow = load_flow(KINDS)
    long_when = KINDS["nodes"][1]["branches"][1]["when"]  # type: ignore[index]
    assert len(long_when) > LABEL_LIMIT
    assert edges(flow) == [
        Edge("ask", "check", "next", "next", ""),
        Edge("ask", "human", "onInvalid", "invalid", "invalid"),
        Edge("ask", "bye", "onTimeout", "timeout", "timeout"),
        Edge("ask", "human", "fallback.next", "fallback", "fallback"),
        Edge("check", "human", "default", "default", "default"),
        Edge("check", "adult", "branches[0].next", "branch", "age >= 18"),
        Edge("check", "bye", "branches[1].next", "branch", long_when[: LABEL_LIMIT - 1] + "…"),
        Edge("adult", "bye", "next", "next", ""),
    ]
    drawn = layout(flow)
    check_layout(flow, drawn)
    labels = {p.id: p.label for p in drawn.nodes}
    assert labels == {
        "ask": "ask",
        "check": "Is an adult?",
        "adult": "adult",
        "human": "human",
        "bye": "bye",
    }
    assert not any(d.back for d in drawn.edges)


def test_ai_intents_and_jump_labels() -> None:
    flow = load_flow(
        {
            "id": "ai",
            "start": "classify",
            "nodes": [
                {
                    "id": "classify",
                    "type": "ai",
                    "text": "{{problem}}",
                    "intents": [
                        {"name": "billing", "keywords": ["bill"], "next": "other"},
                        {"name": "nothing", "keywords": ["x"]},
                    ],
                    "default": "other",
                },
                {"id": "other", "type": "jump", "flowId": "faq"},
            ],
        }
    )
    assert edges(flow) == [
        Edge("classify", "other", "default", "default", "default"),
        Edge("classify", "other", "intents[0].next", "intent", "billing"),
    ]
    drawn = layout(flow)
    check_layout(flow, drawn)
    assert {p.id: p.label for p in drawn.nodes} == {"classify": "classify", "other": "→ faq"}


def test_a_self_loop_is_a_back_edge_beside_its_node() -> None:
    flow = load_flow(
        {
            "id": "again",
            "start": "ask",
            "nodes": [
                {
                    "id": "ask",
                    "type": "question",
                    "text": "number?",
                    "variable": "n",
                    "onInvalid": "ask",
                    "next": "bye",
                },
                {"id": "bye", "type": "end"},
            ],
        }
    )
    drawn = layout(flow)
    check_layout(flow, drawn)
    loop = next(d for d in drawn.edges if d.edge.field == "onInvalid")
    ask = next(p for p in drawn.nodes if p.id == "ask")
    assert loop.back and loop.edge.kind == "invalid"
    right = ask.x + NODE_WIDTH
    high, low = ask.y + NODE_HEIGHT / 4, ask.y + NODE_HEIGHT * 3 / 4
    assert loop.points == (
        (right, high),
        (right + 14, high - 6),
        (right + 14, low + 6),
        (right, low),
    )
    assert drawn.width >= right + 14


def test_a_long_edge_goes_around_by_waypoints() -> None:
    """An edge skipping layers gets one waypoint per layer crossed: it runs straight
    down through both, in a slot beside their nodes."""
    flow = load_flow(
        {
            "id": "skip",
            "start": "a",
            "nodes": [
                {
                    "id": "a",
                    "type": "question",
                    "text": "?",
                    "variable": "v",
                    "next": "b",
                    "onInvalid": "d",
                },
                {"id": "b", "type": "message", "text": "b", "next": "c"},
                {"id": "c", "type": "message", "text": "c", "next": "d"},
                {"id": "d", "type": "end"},
            ],
        }
    )
    drawn = layout(flow)
    check_layout(flow, drawn)
    placed = {p.id: p for p in drawn.nodes}
    long = next(d for d in drawn.edges if d.edge.field == "onInvalid")
    # out of a, across the gap to the slot, down it through b's and c's layers, into d
    (_, y0), (_, y1), (x2, y2), (x3, y3), (_, y4), (_, y5) = long.points
    assert (y0, y1) == (placed["a"].y + NODE_HEIGHT, placed["a"].y + NODE_HEIGHT + STUB)
    assert x2 == x3 and y2 == placed["b"].y - STUB and y3 == placed["c"].y + NODE_HEIGHT + STUB
    assert (y4, y5) == (placed["d"].y - STUB, placed["d"].y)
    for name in ("b", "c"):  # the slot is beside the nodes of the layers crossed
        assert not placed[name].x - CLEARANCE <= x2 <= placed[name].x + NODE_WIDTH + CLEARANCE


def test_a_dangling_target_is_not_drawn() -> None:
    """A flow built without validation (a stored old version) may name a missing node."""
    flow = load_flow(
        {
            "id": "d",
            "start": "a",
            "nodes": [
                {"id": "a", "type": "message", "text": "a", "next": "b"},
                {"id": "b", "type": "end"},
            ],
        }
    )
    broken = flow.model_copy(
        update={"nodes": [flow.nodes[0].model_copy(update={"next": "gone"}), flow.nodes[1]]}
    )
    assert edges(broken) == []
    drawn = layout(broken)
    assert drawn.edges == [] and {p.id for p in drawn.nodes} == {"a", "b"}


def test_start_stays_on_top_when_an_unreachable_node_points_at_it() -> None:
    """A node the start does not reach (a warning, not an error) pointing into the flow
    does not push the start down: its edge is drawn up the side, like a loop's."""
    flow = load_flow(
        {
            "id": "orphan",
            "start": "a",
            "nodes": [
                {"id": "a", "type": "message", "text": "hi", "next": "b"},
                {"id": "b", "type": "end"},
                {"id": "z", "type": "message", "text": "orphan", "next": "a"},
                {"id": "y", "type": "message", "text": "orphan", "next": "z"},
            ],
        }
    )
    assert not has_cycle(flow)
    drawn = layout(flow)
    check_layout(flow, drawn)
    placed = {p.id: p for p in drawn.nodes}
    assert placed["a"].y == MARGIN
    assert [d.edge for d in drawn.edges if d.back] == [Edge("z", "a", "next", "next", "")]


# --------------------------------------------------------------------------- random flows

TYPES = ["message", "condition", "question", "set", "end"]


@st.composite
def flows(draw: st.DrawFn, *, connected: bool = False) -> dict[str, Any]:
    """A random valid flow of message/condition/question/set/end nodes whose targets are
    any of its nodes; ``connected``: every node reachable from the start."""
    n = draw(st.integers(1, 12))
    ids = [f"n{i}" for i in range(n)]
    target = st.sampled_from(ids)
    maybe = st.one_of(st.none(), target)
    nodes: list[dict[str, Any]] = []
    for i, node_id in enumerate(ids):
        kind = draw(st.sampled_from(TYPES))
        node: dict[str, Any] = {"id": node_id, "type": kind}
        if kind == "message":
            node |= {"text": f"text {i}", "next": draw(maybe)}
        elif kind == "question":
            node |= {
                "text": f"question {i}?",
                "variable": f"v{i}",
                "next": draw(maybe),
                "onInvalid": draw(maybe),
                "onTimeout": draw(maybe),
            }
        elif kind == "condition":
            count = draw(st.integers(1, 3))
            node["branches"] = [
                {"when": f"v{i} == {j}", "next": draw(target)} for j in range(count)
            ]
            node["default"] = draw(maybe)
        elif kind == "set":
            node |= {"variables": {f"s{i}": i}, "next": draw(maybe)}
        if draw(st.booleans()):
            node["fallback"] = {"next": draw(target)}
        nodes.append({k: v for k, v in node.items() if v is not None})
    if connected:  # a chain from the start through every node, whatever else points where
        for a, b in itertools.pairwise(nodes):
            if a["type"] == "condition":
                a["default"] = b["id"]
            elif a["type"] == "end":
                a["fallback"] = {"next": b["id"]}
            else:
                a["next"] = b["id"]
    start = "n0" if connected else draw(st.sampled_from(ids))
    return {"id": "random", "start": start, "nodes": nodes}


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(flows())
def test_random_flows_lay_out(data: dict[str, Any]) -> None:
    flow = load_flow(data)
    drawn = layout(flow)
    check_layout(flow, drawn)
    # deterministic: the same definition, parsed again, lays out the same
    assert layout(load_flow(copy.deepcopy(data))).wire() == drawn.wire()
    assert layout(flow).wire() == drawn.wire()


@PROPERTY
@given(flows(connected=True))
def test_the_start_is_on_top(data: dict[str, Any]) -> None:
    flow = load_flow(data)
    assert reachable(flow) == {n.id for n in flow.nodes}
    drawn = layout(flow)
    check_layout(flow, drawn)
    start = next(p for p in drawn.nodes if p.id == flow.start)
    assert start.y == MARGIN


@PROPERTY
@given(flows(connected=True))
def test_back_edges_iff_cycle_when_every_node_is_reached(data: dict[str, Any]) -> None:
    flow = load_flow(data)
    drawn = layout(flow)
    assert any(d.back for d in drawn.edges) is has_cycle(flow)


def _cyclic(flow: Flow, kept: list[Edge]) -> bool:
    """Whether ``kept`` (edges of ``flow``) has a cycle, by Kahn's algorithm."""
    out: dict[str, list[str]] = {n.id: [] for n in flow.nodes}
    for e in kept:
        out[e.source].append(e.target)
    indegree = Counter(t for ts in out.values() for t in ts)
    ready = [n for n in out if indegree[n] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for t in out[node]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    return seen != len(out)


# --------------------------------------------------------------------------- large flows


def check_large(flow: Flow, drawn: Layout) -> None:
    """The properties of :func:`check_layout` that the debugger needs most, checked in
    linear time (its pairwise checks would take longer than the layout)."""
    placed = {p.id: p for p in drawn.nodes}
    assert len(placed) == len(drawn.nodes) == len(flow.nodes)
    assert placed[flow.start].y == MARGIN == min(p.y for p in drawn.nodes)
    rows: dict[float, list[PlacedNode]] = {}
    for p in drawn.nodes:
        assert p.x >= -EPS and p.x + p.width <= drawn.width + EPS, p
        assert p.y + p.height <= drawn.height + EPS, p
        rows.setdefault(p.y, []).append(p)
    for row in rows.values():  # no two overlap
        row.sort(key=lambda p: p.x)
        for a, b in itertools.pairwise(row):
            assert a.x + a.width <= b.x + EPS, (a, b)
    assert [d.edge for d in drawn.edges] == edges(flow)
    for d in drawn.edges:
        for x, y in d.points:
            assert -EPS <= x <= drawn.width + EPS and -EPS <= y <= drawn.height + EPS, d
        if d.back:
            continue
        src, dst = placed[d.edge.source], placed[d.edge.target]
        (x0, y0), (x1, y1) = d.points[0], d.points[-1]
        assert y0 == pytest.approx(src.y + src.height) and src.x <= x0 <= src.x + src.width
        assert y1 == pytest.approx(dst.y) and dst.x <= x1 <= dst.x + dst.width
        assert all(b >= a - EPS for a, b in itertools.pairwise(y for _, y in d.points)), d


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_largest_flows_lay_out_in_bounded_work(shape: str) -> None:
    """The largest flows validation accepts, in the shapes hardest to draw, lay out with
    a bounded number of waypoints in work linear in their size (counted by the layout's
    polls of ``stop``), and still make a drawing the debugger can use."""
    definition = SHAPES[shape]()
    flow, problems = parse_flow(definition, source_bytes=size(definition))
    assert flow is not None, problems
    assert len(flow.nodes) >= MAX_NODES - 10 or size(definition) > 0.9 * MAX_FLOW_BYTES
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        return False

    drawn = layout(flow, stop=stop)
    check_large(flow, drawn)
    count = len(flow.nodes) + len(edges(flow))
    # two ends a forward edge, four a loop, six one down a lane: the rest are waypoints
    # two points a waypoint (the run through its layer), at most six besides
    assert sum(len(d.points) for d in drawn.edges) <= 6 * len(drawn.edges) + 2 * MAX_WAYPOINTS
    assert polls * POLL_EVERY <= 24 * (count + MAX_WAYPOINTS)
    assert orjson.loads(drawn.encode()) == json.loads(json.dumps(drawn.wire()))


def test_a_layout_told_to_stop_ends_with_a_limit_error() -> None:
    """``stop`` answering true ends the layout, at its first poll, with kind limit."""
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        return True

    with pytest.raises(LimitExceeded, match="stopped") as raised:
        layout(load_flow(SHAPES["dense"]()), stop=stop)
    assert polls == 1 and raised.value.details["kind"] == "limit"


def test_edges_beyond_the_waypoint_budget_run_down_one_lane_per_target() -> None:
    """Past MAX_WAYPOINTS the longest edges lose their waypoints (the shortest keep
    theirs) and run down a lane left of the nodes, shared by the edges into one node."""
    flow = load_flow(long_edges(150))  # two edges a node into the end: ~22,000 layers crossed
    drawn = layout(flow)
    laned = check_layout(flow, drawn)
    assert laned > 0
    lane_edges = [d for d in drawn.edges if len(d.points) == 6 and d.points[2][0] < MARGIN * 2]
    assert len(lane_edges) == laned
    assert {d.points[2][0] for d in lane_edges} == {MARGIN + LANE}  # all into one node
    step = NODE_HEIGHT + GAP_Y
    crossed = {id(d): round((d.points[-1][1] - d.points[0][1] - GAP_Y) / step) for d in drawn.edges}
    routed = [d for d in drawn.edges if d not in lane_edges and not d.back]
    assert max(crossed[id(d)] for d in routed) <= min(crossed[id(d)] for d in lane_edges)
    # the budget is on the layers the routed edges cross (edges into one node then share
    # their waypoints, so fewer are made)
    waypoints = sum(crossed[id(d)] for d in routed)
    assert 0.9 * MAX_WAYPOINTS <= waypoints <= MAX_WAYPOINTS


def test_back_edges_share_lanes() -> None:
    """Loops whose spans do not overlap, or that close into one node, share a lane: far
    fewer lanes than loops (each lane widens the drawing); asked for, one lane each."""
    flow = load_flow(back_edges(350))
    drawn = layout(flow)
    check_layout(flow, drawn)
    loops = [d for d in drawn.edges if d.back and d.edge.source != d.edge.target]
    lanes = {d.points[2][0] for d in loops}
    assert len(loops) > 500 and len(lanes) < len(loops) / 3
    small = load_flow(back_edges(40))
    own = layout(small, shared_lanes_from=10**9)
    check_layout(small, own, shared_lanes=False)
    assert len({d.points[2][0] for d in own.edges if d.back and d.edge.source != d.edge.target}) > 1


@PROPERTY
@given(flows(), st.integers(0, 4), st.booleans())
def test_random_flows_lay_out_with_small_bounds(
    data: dict[str, Any], max_waypoints: int, share: bool
) -> None:
    """With a waypoint budget of a few and shared lanes from one node on, every flow is
    still a drawing with every property the debugger relies on."""
    flow = load_flow(data)
    drawn = layout(flow, max_waypoints=max_waypoints, shared_lanes_from=0 if share else 10**9)
    check_layout(flow, drawn, shared_lanes=share)
    assert (
        layout(flow, max_waypoints=max_waypoints, shared_lanes_from=0 if share else 10**9) == drawn
    )
