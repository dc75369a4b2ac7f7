// The flow drawn as SVG from the server's layout (GET .../graph): the server
// owns the layout (positions, edge routes), the page only draws it, so the
// picture is the same wherever it is shown and no layout library is needed.
// The drawing is built once; what changes while the execution runs (current
// node, visited nodes, traversed edges, failures) is only classes toggled on
// existing elements, styled in style.css, plus a small layer of "jumps".
//
// - Nodes show their label as the title line and their id under it (the id is
//   what the timeline and the logs name), then the type.
// - Edge labels are cut in the drawing and whole on hover (<title>; whole
//   conditions come from the flow's definition via setDefinition(), the layout
//   cuts them at 40 characters). Each is placed near its target end, at the
//   first spot along its route that overlaps no label already placed and no
//   node, so the branches of one condition do not stack on each other.
// - Zoom: −, +, Fit (buttons, so the keyboard reaches them; + - 0 also work
//   while the scrolling drawing has the focus). Fit shows the drawing's whole
//   width in the card, never larger than its own size and never so small that
//   its smallest text (MIN_FONT) falls under READABLE_PX on screen: a tall flow
//   scrolls down instead, and one wider than the floor allows scrolls sideways
//   too. A drawing that cannot be read at the side of the execution's details
//   widens its card to the page's width (the card's class "wide"). Fit follows
//   the card's size as the window changes.
// - The path taken includes moves that follow no edge (an operator's advance to
//   another node): drawn as dashed arcs between the two steps' nodes.

import { h, svg } from "./dom.js";

const PAD = 12;
const LABEL_CHARS = 24;
const LABEL_CHAR_PX = 7.7; // 14 px sans, roughly
const ZOOM_STEP = 1.25;
const ZOOM_MIN = 0.2;
const ZOOM_MAX = 3;
/** the smallest text in the drawing (style.css: node ids, types, edge labels), in its units */
export const MIN_FONT = 14;
/** the smallest text size on screen that Fit allows, in CSS px */
export const READABLE_PX = 10;
/** Fit's smallest scale: below it the smallest text is under READABLE_PX */
export const FIT_FLOOR = READABLE_PX / MIN_FONT;

export class FlowGraph {
  /** layout: the /graph answer; onPick(nodeId): a node was clicked */
  constructor(layout, { onPick } = {}) {
    this.layout = layout;
    this.nodes = new Map();
    this.boxes = new Map(); // nodeId -> {x, y, width, height}
    this.edges = new Map(); // "from->to" -> [group elements]
    this.edgeTitles = []; // [{edge, titles: [title elements]}]
    this.jumpKey = "";
    this.zoom = null; // null: fit the card's width
    this.centred = false;
    this.width = (layout.width || 0) + PAD * 2;
    this.height = (layout.height || 0) + PAD * 2;
    this.svg = svg("svg", {
      class: "flow-graph",
      viewBox: `${-PAD} ${-PAD} ${this.width} ${this.height}`,
      width: this.width,
      height: this.height,
      role: "img",
      "aria-label": `Flow ${layout.flowId} version ${layout.flowVersion}: ${layout.nodes.length} nodes`,
    });
    this.svg.append(defs());
    const edgeLayer = svg("g", { class: "edges" });
    this.jumpLayer = svg("g", { class: "jumps" });
    const nodeLayer = svg("g", { class: "nodes" });
    const labelLayer = svg("g", { class: "edge-labels" });
    this.svg.append(edgeLayer, this.jumpLayer, nodeLayer, labelLayer);

    for (const node of layout.nodes || []) this.boxes.set(node.id, { x: node.x, y: node.y, width: node.width, height: node.height });
    const placed = new Boxes();
    for (const b of this.boxes.values()) placed.add(inflate(b, 2));

    for (const edge of layout.edges || []) {
      const points = edge.points || [];
      if (points.length < 2) continue;
      const d = points.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join(" ");
      const group = svg("g", { class: `edge k-${edge.kind || "next"}${edge.back ? " back" : ""}` });
      const groupTitle = svg("title", { text: edgeTitle(edge, edge.label) });
      group.append(groupTitle, svg("path", { d, "marker-end": "url(#arrow)" }));
      const titles = [groupTitle];
      if (edge.label) {
        const text = edge.label.length > LABEL_CHARS ? edge.label.slice(0, LABEL_CHARS - 1) + "…" : edge.label;
        const width = text.length * LABEL_CHAR_PX + 6;
        const [x, y] = placeLabel(points, width, placed);
        const label = svg("text", { x, y: y + 5, class: "edge-label", "text-anchor": "middle" });
        const labelTitle = svg("title", { text: edgeTitle(edge, edge.label) });
        label.append(labelTitle, document.createTextNode(text));
        labelLayer.append(label);
        titles.push(labelTitle);
        group.label = label;
      }
      this.edgeTitles.push({ edge, titles });
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
      const labelled = node.label && node.label !== node.id;
      const middle = node.width / 2;
      const base = node.height / 2;
      const lines = labelled
        ? [
            svg("text", { x: middle, y: base - 11, "text-anchor": "middle", class: "node-title", text: clip(node.label, node.width, 8.2) }),
            svg("text", { x: middle, y: base + 6, "text-anchor": "middle", class: "node-label node-id", text: clip(node.id, node.width, 8.4) }),
            svg("text", { x: middle, y: base + 23, "text-anchor": "middle", class: "node-type", text: node.type }),
          ]
        : [
            svg("text", { x: middle, y: base - 2, "text-anchor": "middle", class: "node-label", text: clip(node.id, node.width, 9) }),
            svg("text", { x: middle, y: base + 17, "text-anchor": "middle", class: "node-type", text: node.type }),
          ];
      group.append(
        svg("title", { text: `${node.id} (${node.type})${labelled ? `: ${node.label}` : ""}` }),
        svg("rect", { width: node.width, height: node.height, rx: 6, ry: 6 }),
        ...lines,
      );
      if (onPick) group.addEventListener("click", () => onPick(node.id));
      nodeLayer.append(group);
      this.nodes.set(node.id, group);
    }

    // the scrolling box and the zoom buttons
    this.el = h("div.graph-scroll", { tabindex: "0", role: "group", "aria-label": "Flow graph: scroll to move around; + and − zoom, 0 fits" }, this.svg);
    this.level = h("span.zoom-level.muted", { "aria-live": "polite", text: "fit" });
    const button = (text, label, fn) => {
      const b = h("button.btn.small", { type: "button", text, "aria-label": label, title: label });
      b.addEventListener("click", fn);
      return b;
    };
    this.toolbar = h(
      "div.zoom",
      { role: "toolbar", "aria-label": "Zoom the flow graph" },
      button("−", "Zoom out", () => this.zoomBy(1 / ZOOM_STEP)),
      button("+", "Zoom in", () => this.zoomBy(ZOOM_STEP)),
      button("Fit", "Fit the flow to the card's width, text kept readable", () => this.setZoom(null)),
      this.level,
    );
    this.el.addEventListener("keydown", (event) => {
      if (event.target !== this.el || event.ctrlKey || event.metaKey || event.altKey) return;
      const moves = { "+": () => this.zoomBy(ZOOM_STEP), "=": () => this.zoomBy(ZOOM_STEP), "-": () => this.zoomBy(1 / ZOOM_STEP), 0: () => this.setZoom(null) };
      if (!(event.key in moves)) return;
      event.preventDefault();
      moves[event.key]();
    });
  }

  /** The flow's node ids and labels, in layout order (for the advance select). */
  nodeList() {
    return (this.layout.nodes || []).map((n) => ({ id: n.id, type: n.type, label: n.label }));
  }

  /**
   * Once on the page: a drawing that Fit cannot show readably beside the details
   * widens its card; Fit is applied, and again whenever the card changes size.
   */
  shown() {
    const card = this.el.closest(".graph-card");
    if (card) {
      // measured at the card's usual width: a small flow after a big one narrows it again
      card.classList.remove("wide");
      if (this.el.clientWidth && this.width * FIT_FLOOR > this.el.clientWidth) card.classList.add("wide");
    }
    this.setZoom(this.zoom);
    if (typeof ResizeObserver === "function" && !this.resizing) {
      let room = this.el.clientWidth;
      this.resizing = new ResizeObserver(() => {
        if (this.zoom !== null || this.el.clientWidth === room) return;
        room = this.el.clientWidth;
        this.setZoom(null);
      });
      this.resizing.observe(this.el);
    }
  }

  /** Off the page for good (another flow's drawing replaces it): stop following its size. */
  dispose() {
    if (this.resizing) this.resizing.disconnect();
    this.resizing = null;
  }

  /** Scroll so node `id` is in the middle of the view, if it is not in view already. */
  centre(id) {
    const box = this.boxes.get(id);
    if (!box) return;
    const scale = this.scale();
    const el = this.el;
    const [left, top] = [(box.x + PAD) * scale, (box.y + PAD) * scale];
    const [right, bottom] = [left + box.width * scale, top + box.height * scale];
    if (left < el.scrollLeft || right > el.scrollLeft + el.clientWidth) el.scrollLeft = (left + right) / 2 - el.clientWidth / 2;
    if (top < el.scrollTop || bottom > el.scrollTop + el.clientHeight) el.scrollTop = (top + bottom) / 2 - el.clientHeight / 2;
  }

  /** The flow's definition (GET /v1/flows/{id}): edge titles get their whole condition. */
  setDefinition(definition) {
    const byId = new Map((definition?.nodes || []).map((n) => [n.id, n]));
    for (const { edge, titles } of this.edgeTitles) {
      const whole = wholeLabel(byId.get(edge.from), edge.field);
      if (whole) for (const title of titles) title.textContent = edgeTitle(edge, whole);
    }
  }

  /** The scale the drawing is shown at now (fit: what the card's width allows, at most 1, at least FIT_FLOOR). */
  scale() {
    if (this.zoom !== null) return this.zoom;
    const room = this.el.clientWidth || this.width;
    return Math.max(FIT_FLOOR, Math.min(1, room / this.width));
  }

  zoomBy(factor) {
    this.setZoom(Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, this.scale() * factor)));
  }

  /** zoom: a scale, or null to fit the card's width; the point in the middle of the view stays there. */
  setZoom(zoom) {
    const box = this.el;
    const before = this.scale();
    const cx = (box.scrollLeft + box.clientWidth / 2) / before;
    const cy = (box.scrollTop + box.clientHeight / 2) / before;
    this.zoom = zoom;
    const scale = this.scale();
    // whole pixels, rounded down: a fitted drawing never overflows its box by a fraction
    this.svg.setAttribute("width", String(Math.floor(this.width * scale)));
    this.svg.setAttribute("height", String(Math.floor(this.height * scale)));
    this.level.textContent = zoom === null ? `fit ${Math.round(scale * 100)}%` : `${Math.round(zoom * 100)}%`;
    if (zoom !== null) {
      box.scrollLeft = cx * zoom - box.clientWidth / 2;
      box.scrollTop = cy * zoom - box.clientHeight / 2;
    }
  }

  /**
   * Mark the run: `steps` (oldest first) give the path; the current node is
   * highlighted; steps with an error are failed, steps in `fallback` fallbacks.
   * Consecutive nodes with no edge between them (an operator's advance) get a
   * dashed arc.
   */
  update(steps, current, status) {
    const visited = new Set();
    const failed = new Set();
    const fallback = new Set();
    const traversed = new Set();
    const moves = [];
    let previous = null;
    const move = (from, to) => {
      traversed.add(`${from}->${to}`);
      moves.push([from, to]);
    };
    for (const step of steps || []) {
      if (!step.nodeId) continue;
      visited.add(step.nodeId);
      if (step.error) failed.add(step.nodeId);
      if (step.status === "fallback") fallback.add(step.nodeId);
      if (previous && previous !== step.nodeId) move(previous, step.nodeId);
      previous = step.nodeId;
    }
    if (previous && current && previous !== current) move(previous, current);
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
        group.label?.classList.toggle("traversed", on);
        group.querySelector("path").setAttribute("marker-end", on ? "url(#arrow-on)" : "url(#arrow)");
      }
    }
    if (!this.centred && current) {
      this.centred = true;
      this.centre(current);
    }
    this.drawJumps(moves.filter(([from, to]) => !this.edges.has(`${from}->${to}`) && this.boxes.has(from) && this.boxes.has(to)));
  }

  drawJumps(jumps) {
    const unique = [...new Map(jumps.map((j) => [`${j[0]}->${j[1]}`, j])).values()];
    const key = unique.map((j) => j.join(">")).join("|");
    if (key === this.jumpKey) return;
    this.jumpKey = key;
    this.jumpLayer.replaceChildren();
    for (const [from, to] of unique) {
      const a = this.boxes.get(from);
      const b = this.boxes.get(to);
      this.jumpLayer.append(
        svg(
          "g",
          { class: "jump", "data-from": from, "data-to": to },
          svg("title", { text: `${from} → ${to}: no edge joins them (an operator's advance)` }),
          svg("path", { d: arc(a, b), "marker-end": "url(#arrow-jump)" }),
        ),
      );
    }
  }
}

function edgeTitle(edge, label) {
  return `${edge.from} → ${edge.to}${label ? `: ${label}` : ""}`;
}

/** The whole text behind an edge's label, from the node that names it at `field`. */
function wholeLabel(node, field) {
  if (!node || !field) return "";
  const match = field.match(/^(branches|intents)\[(\d+)\]/);
  if (!match) return "";
  const item = node[match[1]]?.[Number(match[2])];
  if (!item) return "";
  return match[1] === "branches" ? item.when || "" : item.name || "";
}

/**
 * Where a label of `width` goes on the route `points`: near the target end,
 * moving back along the route until it overlaps nothing in `placed` (boxes
 * already taken, nodes included); the spot is added to `placed`.
 */
function placeLabel(points, width, placed) {
  const segments = [];
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    const length = Math.hypot(points[i][0] - points[i - 1][0], points[i][1] - points[i - 1][1]);
    segments.push([points[i - 1], points[i], length]);
    total += length;
  }
  const at = (distance) => {
    let left = Math.max(0, Math.min(total, distance));
    for (const [[x1, y1], [x2, y2], length] of segments) {
      if (left <= length || length === 0) {
        const t = length ? left / length : 0;
        return [x1 + (x2 - x1) * t, y1 + (y2 - y1) * t];
      }
      left -= length;
    }
    const last = points[points.length - 1];
    return [last[0], last[1]];
  };
  const height = 22; // a 14 px line with its ascent and descent, as the browser boxes it
  let best = null;
  // on the route first; then beside it (a label whose route is crowded sits next to
  // it, where it still reads as that edge's, rather than on another label)
  const beside = [[0, 0]];
  for (const dy of [0, height, -height, 2 * height, -2 * height]) {
    for (const dx of [0, width / 2 + 4, -width / 2 - 4, width + 8, -width - 8]) if (dx || dy) beside.push([dx, dy]);
  }
  search: for (const [dx, dy] of beside) {
    for (let back = 24; back <= total - 8; back += 9) {
      const [px, py] = at(total - back);
      const [x, y] = [px + dx, py + dy];
      const box = { x: x - width / 2, y: y - height / 2, width, height };
      const hits = placed.hits(box);
      if (!best || hits < best.hits) best = { x, y, box, hits };
      if (!hits) break search;
    }
  }
  if (!best) {
    const [x, y] = at(total / 2);
    best = { x, y, box: { x: x - width / 2, y: y - height / 2, width, height } };
  }
  placed.add(best.box);
  return [Math.round(best.x * 10) / 10, Math.round(best.y * 10) / 10];
}

/** Boxes taken, found by a grid of CELL-sized squares: a spot is checked against the
 * boxes near it, not all of them (a large flow has thousands of labels). */
const CELL = 128;
class Boxes {
  constructor() {
    this.cells = new Map();
  }
  *cellsOf(box) {
    for (let i = Math.floor(box.x / CELL); i <= Math.floor((box.x + box.width) / CELL); i++) {
      for (let j = Math.floor(box.y / CELL); j <= Math.floor((box.y + box.height) / CELL); j++) yield `${i},${j}`;
    }
  }
  add(box) {
    for (const key of this.cellsOf(box)) {
      if (!this.cells.has(key)) this.cells.set(key, []);
      this.cells.get(key).push(box);
    }
  }
  /** how many boxes taken `box` overlaps */
  hits(box) {
    const seen = new Set();
    for (const key of this.cellsOf(box)) for (const other of this.cells.get(key) || []) if (overlaps(box, other)) seen.add(other);
    return seen.size;
  }
}

function overlaps(a, b) {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

function inflate(box, by) {
  return { x: box.x - by, y: box.y - by, width: box.width + 2 * by, height: box.height + 2 * by };
}

/** A curve from box `a` to box `b` that bows out sideways, so it reads as "not an edge". */
function arc(a, b) {
  const down = b.y >= a.y;
  const x1 = a.x + a.width / 2;
  const y1 = down ? a.y + a.height : a.y;
  const x2 = b.x + b.width / 2;
  const y2 = down ? b.y : b.y + b.height;
  const bow = Math.max(50, Math.abs(y2 - y1) * 0.35);
  const side = x2 >= x1 ? -1 : 1;
  return `M${x1} ${y1} C${x1 + side * bow} ${y1 + (down ? bow : -bow)} ${x2 + side * bow} ${y2 + (down ? -bow : bow)} ${x2} ${y2}`;
}

function defs() {
  const make = (id) =>
    svg(
      "marker",
      { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse", class: id },
      svg("path", { d: "M0 0 L10 5 L0 10 z" }),
    );
  return svg("defs", {}, make("arrow"), make("arrow-on"), make("arrow-jump"));
}

/** Cut a label to what fits in `width` px at `charPx` a character. */
function clip(text, width, charPx) {
  const fits = Math.max(4, Math.floor((width - 12) / charPx));
  return text.length > fits ? text.slice(0, fits - 1) + "…" : text;
}
