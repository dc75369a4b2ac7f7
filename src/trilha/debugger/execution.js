// One execution, in real time. The execution's own event stream (from the start
// of its trail, then live) drives the view: its lines are the logs panel, and
// each line marks which answers are stale (a node line: the steps and the
// variables; a state line: the history; a message: the transcript...). Stale
// parts are refetched together at most every 400 ms, so a burst of lines costs
// one round of requests and a key's rate limit is never approached. The layout
// is two columns on wide screens (the flow graph | tabs) and one on a phone.
// While a message is queued or being retried the execution is read again every
// few seconds: one pending past due becomes undelivered with no line to say so,
// and its delivery goes on after the execution (and its stream) ended.

import { api, ApiError, withQuery } from "./api.js";
import { Controls, controlsOf } from "./controls.js";
import { DependencyStates } from "./dependencies.js";
import { clear, h, setText } from "./dom.js";
import { executionHeader } from "./facts.js";
import { FlowGraph } from "./graph.js";
import { HistoryPanel, LogsPanel, TimelinePanel, TranscriptPanel } from "./panels.js";
import { CallStack } from "./stack.js";
import { follow } from "./sse.js";
import { tabWidget } from "./tabs.js";
import { VariablesPanel } from "./variables.js";

const REFRESH_EVERY_MS = 400;
/** how often an execution with messages still on their way is read again */
const DELIVERY_EVERY_MS = 5000;
const TABS = [
  { id: "conversation", label: "Conversation", panel: "transcript" },
  { id: "timeline", label: "Timeline", panel: "timeline" },
  { id: "variables", label: "Variables", panel: "variables" },
  { id: "logs", label: "Logs", panel: "logs" },
  { id: "history", label: "History", panel: "history" },
];

export function mountExecution(container, executionId, { me }) {
  const base = `/v1/executions/${encodeURIComponent(executionId)}`;
  let gone = false;
  let execution = null;
  let steps = [];
  let graph = null;
  // the flow drawn ("id@version"): inside a sub-flow, the running frame's
  let drawn = "";
  const callStack = new CallStack();
  let controls = null;
  let stream = null;
  let tick = 0;
  let appliedAt = 0; // when the execution was last read (its transcript's delivery)
  // the breaker of the dependency it waits for, asked again as the execution changes
  const dependencies = new DependencyStates(() => header?.showDependency(dependencies));

  const root = h("section.execution-view", { "aria-busy": "true" });
  const crumbs = h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("a", { href: "/debugger/", text: "← Executions" }));
  const loadingNote = h("p.muted", { text: "Loading…" });
  root.append(crumbs, loadingNote);
  container.append(root);
  document.title = `trilha · ${executionId.slice(0, 12)}`;

  // ------------------------------------------------------------ refreshing
  const dirty = new Set();
  let timer = 0;
  let last = 0;
  let inFlight = false;
  function want(...parts) {
    for (const part of parts) dirty.add(part);
    if (timer || gone) return;
    timer = setTimeout(runRefresh, Math.max(0, last + REFRESH_EVERY_MS - Date.now()));
  }
  async function runRefresh() {
    timer = 0;
    if (inFlight) {
      // one round at a time, so an older answer never lands after a newer one
      timer = setTimeout(runRefresh, REFRESH_EVERY_MS);
      return;
    }
    inFlight = true;
    last = Date.now();
    const parts = [...dirty];
    dirty.clear();
    try {
      await Promise.all(parts.map((part) => load(part).catch((error) => problem(part, error))));
    } finally {
      inFlight = false;
    }
  }
  function problem(part, error) {
    if (gone || error.name === "AbortError") return;
    if (error instanceof ApiError && error.status === 404) notFound();
  }

  const loaders = {
    execution: async () => applyExecution(await api(base)),
    steps: async () => {
      steps = (await api(`${base}/steps`)).steps || [];
      if (gone) return;
      view.timeline.update(steps);
      redrawGraph();
    },
    variables: async () => {
      const answer = await api(`${base}/variables`);
      if (gone) return;
      view.variables.update(answer);
      if (execution) view.variables.setAllowed(controlsOf(execution, me).variables);
    },
    history: async () => {
      const answer = await api(`${base}/history`);
      if (!gone) view.history.update(answer);
    },
  };
  const load = (part) => loaders[part]();

  // ------------------------------------------------------------------ view
  const view = {
    timeline: new TimelinePanel(),
    transcript: new TranscriptPanel(),
    logs: new LogsPanel(),
    history: new HistoryPanel(),
    variables: new VariablesPanel(executionId, {
      onChanged: (ex) => {
        applyExecution(ex);
        want("variables", "history");
      },
    }),
  };

  async function start() {
    let first;
    try {
      first = await api(base);
    } catch (error) {
      if (gone) return;
      if (error instanceof ApiError && error.status === 404) notFound();
      else failed(error);
      return;
    }
    if (gone) return;
    build(first);
    applyExecution(first);
    want("steps", "variables", "history");
    loadGraph(first);
    stream = follow(`${base}/events`, {
      onOpen: () => live("live", "on"),
      onDrop: () => live("reconnecting…", "off"),
      onFatal: (status) => (status === 404 ? notFound() : live(`no live updates (HTTP ${status})`, "off")),
      onEvent: onLine,
      onEnd: () => {
        live("ended: no more live events", "ended");
        want("execution", "steps", "variables", "history");
      },
    });
    tick = setInterval(() => updateClocks(), 1000);
  }

  let header = null;
  let liveEl = null;
  let graphWrap = null;
  let zoomSlot = null;
  let pendingLines = [];
  let lineFrame = 0;

  function build(ex) {
    clear(root);
    root.removeAttribute("aria-busy");
    liveEl = h("span.live", { role: "status", text: "connecting…" });
    header = executionHeader(ex);
    controls = new Controls(ex, {
      me,
      onResult: (next) => {
        applyExecution(next);
        want("steps", "variables", "history");
      },
      onMessageSent: () => want("execution"),
    });
    graphWrap = h("div.graph-wrap", {}, h("p.muted", { text: "Loading the flow…" }));
    const legend = h(
      "ul.legend",
      { "aria-label": "Legend" },
      [
        ["current", "current node"],
        ["visited", "visited"],
        ["traversed", "path taken"],
        ["failed", "failed step"],
        ["fallback", "fallback"],
        ["jump", "jump (no edge)"],
      ].map(([cls, text]) => h("li", {}, h(`span.key.${cls}`, { "aria-hidden": "true" }), text)),
    );
    zoomSlot = h("div.zoom-slot");
    root.append(
      h("div.crumb-row", {}, crumbs, liveEl),
      header.el,
      controls.el,
      callStack.el,
      h(
        "div.exec-grid",
        {},
        h(
          "section.card.graph-card",
          { "aria-labelledby": "graph-title" },
          h("div.graph-head", {}, h("h2", { id: "graph-title", text: "Flow" }), zoomSlot),
          legend,
          graphWrap,
        ),
        tabWidget(
          TABS.map((tab) => ({ ...tab, el: view[tab.panel].el })),
          "Execution details",
        ),
      ),
    );
  }

  function loadFlow(ex) {
    const name = String(ex.flowId).split("/").pop();
    const params = { version: ex.flowVersion, institutionId: me.role === "admin" ? ex.institutionId : "" };
    return api(withQuery(`/v1/flows/${encodeURIComponent(name)}`, params));
  }

  async function loadGraph(ex) {
    drawn = flowKey(ex);
    try {
      const layout = await api(`${base}/graph`);
      if (gone) return;
      // a call or a return moved it meanwhile: the newer flow's drawing is on its way
      if (drawn !== `${layout.flowId}@${layout.flowVersion}`) return;
      if (graph) graph.dispose();
      graph = new FlowGraph(layout, { onPick: (id) => controls.pick(id) });
      clear(graphWrap).append(graph.el);
      clear(zoomSlot).append(graph.toolbar);
      graph.shown();
      controls.setNodes(graph.nodeList());
      redrawGraph();
      // the layout cuts edge labels; the definition has whole conditions for the hover titles
      loadFlow(ex)
        .then((flow) => !gone && graph.setDefinition(flow.definition))
        .catch(() => {});
    } catch (error) {
      if (gone) return;
      clear(graphWrap).append(h("p.empty", { text: `The flow's graph is not available: ${error.message}` }));
      // still offer the flow's nodes as advance targets
      try {
        const flow = await loadFlow(ex);
        const nodes = (flow.definition?.nodes || []).map((n) => ({ id: n.id, type: n.type, label: n.id }));
        if (!gone) controls.setNodes(nodes);
      } catch {
        // no node list: the advance select offers "next node" only
      }
    }
  }

  function redrawGraph() {
    if (!graph || !execution) return;
    // only the running flow's steps: a sub-flow's (or its caller's) nodes are not drawn here
    const here = steps.filter((s) => !s.flowId || (s.flowId === execution.flowId && s.flowVersion === execution.flowVersion));
    graph.update(here, execution.currentNodeId, execution.status);
  }

  function applyExecution(ex) {
    if (gone || !header) return;
    execution = ex;
    appliedAt = Date.now();
    header.update(ex);
    if (header.dependency()) dependencies.refresh();
    else header.showDependency(null);
    controls.update(ex);
    callStack.update(ex);
    // a sub-flow was entered or returned from (or a jump): draw the running flow
    if (drawn && flowKey(ex) !== drawn) loadGraph(ex);
    view.variables.setAllowed(controlsOf(ex, me).variables);
    if (ex.transcript) view.transcript.update(ex.transcript);
    redrawGraph();
  }

  function flowKey(ex) {
    return `${ex.flowId}@${ex.flowVersion}`;
  }

  function onLine(type, data) {
    pendingLines.push(data);
    if (!lineFrame) {
      lineFrame = requestAnimationFrame(() => {
        lineFrame = 0;
        const lines = pendingLines;
        pendingLines = [];
        if (!gone) view.logs.add(lines);
      });
    }
    const message = data.message || "";
    if (type === "state") want("execution", "history");
    else if (type === "node") want("execution", "steps", "variables");
    else if (type === "message") want("execution");
    else if (message.startsWith("operator.") || message === "execution.ended") want("execution", "steps", "variables", "history");
    else want("execution", "steps", "history");
  }

  function live(text, kind) {
    if (!liveEl) return;
    setText(liveEl, text);
    liveEl.className = `live ${kind}`;
  }

  function updateClocks() {
    if (header && execution) header.tick(Date.now());
    const onTheirWay = execution?.transcript?.some((t) => t.outbox === "queued" || t.outbox === "pending");
    if (onTheirWay && Date.now() - appliedAt > DELIVERY_EVERY_MS) want("execution");
    if (header?.dependency()) dependencies.refresh(); // a breaker closes on its own clock
  }

  function notFound() {
    if (gone) return;
    teardown();
    clear(root).append(
      crumbs,
      h(
        "div.not-found",
        { role: "alert" },
        h("h1", { text: "Execution not found" }),
        h("p", {}, "No execution ", h("code", { text: executionId }), " is visible to this key: it does not exist, or it belongs to another institution."),
        h("p", {}, h("a", { href: "/debugger/", text: "Back to the executions" })),
      ),
    );
  }

  function failed(error) {
    clear(root).append(crumbs, h("p.form-error", { role: "alert", text: `Could not load the execution: ${error.message}` }));
  }

  function teardown() {
    dependencies.stop();
    stream?.stop();
    stream = null;
    clearTimeout(timer);
    clearInterval(tick);
    cancelAnimationFrame(lineFrame);
  }

  start();
  return {
    unmount() {
      gone = true;
      teardown();
      document.title = "trilha debugger";
    },
  };
}
