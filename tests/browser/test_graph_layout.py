"""The flow graph at *Fit*, measured in the drawn page: the examples and a 50-node flow
(tests/flows/telecom_support.json: menus, http calls with fallbacks, loops back to
menus, handoffs, ends) in one ``trilha serve``, each opened in the debugger at a
1280x900 window and checked from the SVG the browser laid out: every node box inside
the visible width of the graph's box (a tall flow scrolls down), node text at least
READABLE_PX on screen, no edge segment through a node it does not join, back edges up
a lane right of every node. The 50-node flow's card, let down to the drawing's whole
height, is saved as docs/img/graph-50-nodes.png (with TRILHA_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import login

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIFTY = ROOT / "tests" / "flows" / "telecom_support.json"
#: flows a plain server can start (clinic_desk's sub-flow and calendar need the
#: example configuration; its drawing is checked by the unit tests like every example)
FLOWS = ["telecom_support", "scheduling", "clinic", "support_triage", "onboarding", "faq"]
#: the smallest on-screen text Fit allows (graph.js READABLE_PX)
READABLE_PX = 10
#: how far an edge keeps from a node it does not join, in drawing units
CLEARANCE = 3

#: reads the drawn graph: node boxes on screen, their texts' sizes, edges' points
MEASURE = """() => {
  const svg = document.querySelector("svg.flow-graph");
  const box = document.querySelector(".graph-scroll");
  const m = svg.getScreenCTM();
  const scale = m.a;
  const view = box.getBoundingClientRect();
  const left = view.left + box.clientLeft;
  // a text's size on screen: its font size in the drawing's units times the scale
  const px = (text) => parseFloat(getComputedStyle(text).fontSize) * scale;
  const nodes = [...svg.querySelectorAll("g.node")].map((g) => {
    const r = g.querySelector("rect").getBoundingClientRect();
    const t = g.transform.baseVal.consolidate().matrix;
    const rect = g.querySelector("rect");
    return {
      id: g.dataset.node,
      screen: [r.left, r.top, r.right, r.bottom],
      box: [t.e, t.f, t.e + rect.width.baseVal.value, t.f + rect.height.baseVal.value],
      fonts: [...g.querySelectorAll("text")].map(px),
    };
  });
  const edges = [...svg.querySelectorAll("g.edge")].map((g) => {
    const title = g.querySelector("title").textContent;
    const d = g.querySelector("path").getAttribute("d");
    const points = [...d.matchAll(/[ML](-?[\\d.]+) (-?[\\d.]+)/g)].map((p) => [+p[1], +p[2]]);
    return { title, back: g.classList.contains("back"), points };
  });
  const labels = [...svg.querySelectorAll(".edge-label")].map(px);
  return {
    scale, nodes, edges, labels,
    view: [left, view.top, left + box.clientWidth, view.bottom],
    level: document.querySelector(".zoom-level").textContent,
  };
}"""


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server for the module with the examples and the 50-node flow published."""
    from conftest import module_api

    flows = tmp_path_factory.mktemp("graph-flows")
    for path in [*sorted((ROOT / "examples").glob("*.json")), FIFTY]:
        shutil.copyfile(path, flows / path.name)
    with module_api(tmp_path_factory, "graphs", "--flows", str(flows), "--workers", "0") as api:
        yield api.tenant()


def crosses(a: list[float], b: list[float], box: list[float], margin: float) -> bool:
    """Whether segment ``a``-``b`` enters ``box`` (x0, y0, x1, y1) grown by ``margin``."""
    (x0, y0), (x1, y1) = a, b
    low, high = 0.0, 1.0
    for step, room in (
        (x0 - x1, x0 - (box[0] - margin)),
        (x1 - x0, box[2] + margin - x0),
        (y0 - y1, y0 - (box[1] - margin)),
        (y1 - y0, box[3] + margin - y0),
    ):
        if step == 0:
            if room < 0:
                return False
        elif step < 0:
            low = max(low, room / step)
        else:
            high = min(high, room / step)
    return low < high


def test_every_flow_is_readable_at_fit(
    graphs: Any, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(width=1280, height=900)
    login(page, graphs.url, graphs.keys["acme_operator"])
    for name in FLOWS:
        with graphs.client("acme_operator") as client:
            answer = client.post(
                "/v1/executions",
                json={"flowId": name, "conversationId": f"g-{name}", "contactId": "5511900000000"},
            )
        assert answer.status_code == 201, answer.text
        page.goto(f"{graphs.url}/debugger/executions/{answer.json()['executionId']}")
        expect(page.locator("svg.flow-graph g.node").first).to_be_visible()
        page.get_by_role("button", name="Fit the flow").click()
        drawn = page.evaluate(MEASURE)
        assert drawn["level"].startswith("fit"), (name, drawn["level"])
        definition = json.loads(
            (FIFTY if name == "telecom_support" else ROOT / "examples" / f"{name}.json").read_text(
                encoding="utf-8"
            )
        )
        assert len(drawn["nodes"]) == len(definition["nodes"]), name
        left, _, right, _ = drawn["view"]
        for node in drawn["nodes"]:
            # inside the visible width of the graph's box (a tall flow scrolls down)
            x0, _, x1, _ = node["screen"]
            assert left - 0.5 <= x0 and x1 <= right + 0.5, (
                name,
                node["id"],
                node["screen"],
                drawn["view"],
            )
            assert min(node["fonts"]) >= READABLE_PX - 0.01, (name, node["id"], node["fonts"])
        assert all(size >= READABLE_PX - 0.01 for size in drawn["labels"]), name
        boxes = {n["id"]: n["box"] for n in drawn["nodes"]}
        rightmost = max(b[2] for b in boxes.values())
        for edge in drawn["edges"]:
            ends = edge["title"].split(":")[0].split(" → ")
            assert len(edge["points"]) >= 2, edge
            for a, b in itertools.pairwise(edge["points"]):
                for node_id, box in boxes.items():
                    if node_id not in ends:
                        assert not crosses(a, b, box, CLEARANCE), (name, edge["title"], node_id)
            if edge["back"] and ends[0] != ends[1]:  # up a lane right of every node
                assert max(x for x, _ in edge["points"]) > rightmost, (name, edge["title"])
        if name == "telecom_support":
            assert sum(e["back"] for e in drawn["edges"]) >= 5
            # the whole drawing, at Fit's scale: the card let down to its full height, in
            # a window tall enough for it (nothing of the page floats over it)
            page.locator(".graph-scroll").evaluate("(box) => { box.style.maxHeight = 'none'; }")
            page.set_viewport_size({"width": 1280, "height": 2000})
            page.evaluate("() => window.scrollTo(0, 0)")
            shot = tmp_path / "graph-50-nodes.png"
            page.locator(".graph-card").screenshot(path=str(shot))
            assert shot.stat().st_size > 0
            if os.environ.get("TRILHA_DOCS_SCREENSHOTS") == "1":
                (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, ROOT / "docs" / "img" / "graph-50-nodes.png")
