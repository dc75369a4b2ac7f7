// The flow drawn as SVG from the server's layout (GET .../graph): the server
// owns the layout (positions, edge routes), the page only draws it, so the
// picture is the same wherever it is shown and no layout library is needed.
// The drawing is built once; what changes while the execution runs (current
// node, visited nodes, traversed edges, failures) is only classes toggled on
// existing elements, styled in style.css.

import { svg } from "./dom.js";

const PAD = 12;

export class FlowGraph {
  /** layout: the /graph answer; onPick(nodeId): a node was clicked */
  constructor(layout, { onPick } = {}) {
    this.layout = layout;
    this.nodes = new Map();
    this.edges = new Map(); // "from->to" -> [path elements]
    const width = (layout.width || 0) + PAD * 2;
    const height = (layout.height || 0) + PAD * 2;
    this.el = svg("svg", {
      class: "flow-graph",
      viewBox: `${-PAD} ${-PAD} ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": `Flow ${layout.flowId} version ${layout.flowVersion}: ${layout.nodes.length} nodes`,
    });
    this.el.append(defs());
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    this.el.append(edgeLayer, nodeLayer);

    for (const edge of layout.edges || []) {
      const points = edge.points || [];
      if (points.length < 2) continue;
      const d = points.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join(" ");
      const group = svg("g", { class: `edge k-${edge.kind || "next"}${edge.back ? " back" : ""}` });
      const path = svg("path", { d, "marker-end": "url(#arrow)" });
      group.append(path);
      if (edge.label) {
        const [x, y] = midpoint(points);
        const text = edge.label.length > 22 ? edge.label.slice(0, 21) + "…" : edge.label;
        group.append(svg("text", { x, y: y - 3, class: "edge-label", "text-anchor": "middle", text }));
      }
      group.append(svg("title", { text: `${edge.from} → ${edge.to}${edge.label ? ` (${edge.label})` : ""}` }));
      edgeLayer.append(group);
      const key = `${edge.from}->${edge.to}`;
      if (!this.edges.has(key)) this.edges.set(key, []);
      this.edges.get(key).push(group);
    }

    for (const node of layout.nodes || []) {
      const group = svg("g", {
        class: `node t-${node.type}${node.id === layout.start ? " start" : ""}`,
        transform: `translate(${node.x} ${node.y})`,
        "data-node": node.id,
      });
      group.append(
        svg("rect", { width: node.width, height: node.height, rx: 6, ry: 6 }),
        svg("text", { x: node.width / 2, y: node.height / 2 - 3, "text-anchor": "middle", class: "node-label", text: clip(node.label || node.id, node.width) }),
        svg("text", { x: node.width / 2, y: node.height / 2 + 11, "text-anchor": "middle", class: "node-type", text: node.type }),
        svg("title", { text: `${node.id} (${node.type})${node.label && node.label !== node.id ? `: ${node.label}` : ""}` }),
      );
      if (onPick) group.addEventListener("click", () => onPick(node.id));
      nodeLayer.append(group);
      this.nodes.set(node.id, group);
    }
  }

  /** The flow's node ids and labels, in layout order (for the advance select). */
  nodeList() {
    return (this.layout.nodes || []).map((n) => ({ id: n.id, type: n.type, label: n.label }));
  }

  /**
   * Mark the run: `steps` (oldest first) give the path; the current node is
   * highlighted; steps with an error are failed, steps in `fallback` fallbacks.
   */
  update(steps, current, status) {
    const visited = new Set();
    const failed = new Set();
    const fallback = new Set();
    const traversed = new Set();
    let previous = null;
    for (const step of steps || []) {
      if (!step.nodeId) continue;
      visited.add(step.nodeId);
      if (step.error) failed.add(step.nodeId);
      if (step.status === "fallback") fallback.add(step.nodeId);
      if (previous && previous !== step.nodeId) traversed.add(`${previous}->${step.nodeId}`);
      previous = step.nodeId;
    }
    if (previous && current && previous !== current) traversed.add(`${previous}->${current}`);
    if (current) visited.add(current);
    for (const [id, group] of this.nodes) {
      group.classList.toggle("visited", visited.has(id));
      group.classList.toggle("current", id === current);
      group.classList.toggle("failed", failed.has(id) || (id === current && status === "failed"));
      group.classList.toggle("fallback", fallback.has(id));
      group.classList.toggle("ended", id === current && ["completed", "cancelled", "timeout"].includes(status));
    }
    for (const [key, groups] of this.edges) {
      const on = traversed.has(key);
      for (const group of groups) {
        group.classList.toggle("traversed", on);
        group.firstChild.setAttribute("marker-end", on ? "url(#arrow-on)" : "url(#arrow)");
      }
    }
  }
}

function defs() {
  const make = (id) =>
    svg(
      "marker",
      { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse", class: id },
      svg("path", { d: "M0 0 L10 5 L0 10 z" }),
    );
  return svg("defs", {}, make("arrow"), make("arrow-on"));
}

function midpoint(points) {
  if (points.length === 2) return [(points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2];
  return points[Math.floor(points.length / 2)];
}

/** Cut a label to what fits in `width` px at ~7 px a character. */
function clip(text, width) {
  const fits = Math.max(4, Math.floor((width - 12) / 7));
  return text.length > fits ? text.slice(0, fits - 1) + "…" : text;
}
