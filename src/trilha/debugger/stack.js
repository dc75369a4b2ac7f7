// The call stack of an execution inside sub-flows (subflow nodes): which flows
// it runs, the one it started in first, the running one last and marked, each
// caller at the subflow node it waits at, with its own variables (kept while the
// sub-flow runs with its input alone; read-only here: the Variables tab and its
// edits are the running frame's). Hidden outside a sub-flow (one frame). From
// the execution view's `stack`: [{flowId, version, nodeId, running, variables?}].

import { clear, h, setText } from "./dom.js";
import { valueDetails } from "./panels.js";

/** A stored flow id as a person reads it: the name, without its owner. */
const flowName = (id) => String(id || "").split("/").pop();

export class CallStack {
  constructor() {
    this.list = h("ol.stack-frames");
    this.title = h("h2", { id: "stack-title", text: "Call stack" });
    this.note = h("p.muted.stack-note");
    this.el = h("section.card.call-stack", { "aria-labelledby": "stack-title", hidden: true }, this.title, this.note, this.list);
    this.key = "";
  }

  /** ex: the execution view (its `stack`). */
  update(ex) {
    const stack = Array.isArray(ex.stack) ? ex.stack : [];
    this.el.hidden = stack.length < 2;
    const key = JSON.stringify(stack);
    if (key === this.key) return;
    this.key = key;
    clear(this.list);
    const depth = stack.length - 1;
    setText(this.note, depth > 0 ? `${depth} sub-flow${depth === 1 ? "" : "s"} deep: the graph shows the running one.` : "");
    stack.forEach((frame, i) => {
      const where = h("span.frame-where", {}, h("code.frame-flow", { text: `${flowName(frame.flowId)} v${frame.version}` }), " at ", h("code.frame-node", { text: frame.nodeId || "—" }));
      const item = h("li.frame", { dataset: { depth: String(i), flow: frame.flowId || "" } }, where);
      if (frame.running) {
        item.classList.add("running");
        item.setAttribute("aria-current", "step");
        item.append(h("span.badge.frame-running", { text: "running" }), h("span.muted.frame-hint", { text: " its variables: the Variables tab" }));
      } else {
        item.append(h("span.muted.frame-hint", { text: " waits for the sub-flow to return" }), variables(frame.variables || {}, frame.flowId));
      }
      this.list.append(item);
    });
  }
}

function variables(values, flowId) {
  const names = Object.keys(values).sort();
  const summary = h("summary", { text: `Its variables (${names.length})` });
  const body = names.length
    ? h(
        "table.grid.compact.frame-vars",
        { "aria-label": `Variables of ${flowName(flowId)}` },
        h("tbody", {}, names.map((name) => h("tr", {}, h("th.mono", { scope: "row", text: name }), h("td.value", {}, valueDetails(values[name]))))),
      )
    : h("p.empty", { text: "No variables." });
  return h("details.frame-variables", {}, summary, body);
}
