// The Errors view: the step errors of a time span grouped the way a cause shows
// itself (GET /v1/errors: by flow, node, dependency, error kind and HTTP status),
// biggest first, each with how many executions it touched, when it was first and
// last seen and a few of its failing inputs, and a link to the list of exactly
// those executions, each with its failing input (so "every failing code starts
// with 9" is read off one page). It is what an alert's "See the errors behind it"
// opens, with the alert's `since`.
//
// The span is in the URL: `since` (unix seconds, as an alert's evidence gives it)
// or `window` (seconds back from now, re-read at each refresh); neither is the
// server's default, the last hour. Kept live like the list: the institution's
// event stream triggers a refetch at most every 2 s, and every 15 s when quiet.

import { api, viewOf, withQuery } from "./api.js";
import { ago, clock, h, parseTime, setText, shortId } from "./dom.js";
import { flowSelect, sinceText } from "./filters.js";
import { Throttled } from "./refresh.js";
import { follow, liveIndicator } from "./sse.js";

const WINDOWS = [
  [900, "the last 15 minutes"],
  [3600, "the last hour"],
  [21600, "the last 6 hours"],
  [86400, "the last 24 hours"],
];
const DEFAULT_WINDOW = 3600; // the server's own default
/** the most groups asked for: a page an operator reads, not an export */
const LIMIT = 100;
const INPUTS_SHOWN = 10;

/** An error as one line: type · code · message (what a table cell and a title show). */
export function errorSummary(error) {
  if (error === null || error === undefined) return "";
  if (typeof error !== "object") return String(error);
  return [error.type, error.code, error.message].filter(Boolean).join(" · ");
}

/** Whether two errors say the same (the first error and the last may be one). */
// "Open its 30 executions →", "Open its execution →"
function openText(count) {
  if (count === 1) return "Open its execution →";
  return count === null || count === undefined ? "Open its executions →" : `Open its ${count} executions →`;
}

export function sameError(a, b) {
  if (!a || !b) return a === b;
  return a.type === b.type && a.message === b.message && a.code === b.code;
}

/** A failed step's input as one line: the request, for a call; else its input. */
export function failingInput(step) {
  const error = step?.error || {};
  const request = error.request ?? error.details?.request;
  if (request) return String(request);
  const input = step?.input;
  if (input === null || input === undefined || input === "") return "—";
  return typeof input === "string" ? input : JSON.stringify(input);
}

/**
 * A failing input as a cell shows it: a request ("GET http://crm:8123/customers/91234")
 * without its scheme and host, the same on every row of a dependency, so the part
 * that differs is what is read ("GET /customers/91234"); the whole stays in the title.
 */
export function shortInput(text) {
  const match = /^([A-Z]+) [a-z][a-z0-9+.-]*:\/\/[^/?#\s]*(\S*)$/.exec(text);
  if (!match) return text;
  return `${match[1]} ${match[2] || "/"}`;
}

/** A failing input as a code element: short text, the whole in its title. */
export function inputCode(input) {
  const text = typeof input === "string" ? input : JSON.stringify(input);
  const short = shortInput(text);
  return h("code", { title: short === text ? null : text, text: short });
}

function readSpan() {
  const query = new URLSearchParams(location.search);
  const since = Number(query.get("since"));
  const window = Number(query.get("window"));
  return {
    since: Number.isFinite(since) && since > 0 ? String(query.get("since")) : "",
    window: WINDOWS.some(([seconds]) => seconds === window) ? window : 0,
    flowId: (query.get("flowId") || "").slice(0, 200),
  };
}

function groupKey(group) {
  return [group.flowId, group.nodeId, group.dependency, group.kind, group.status].map((v) => v ?? "").join("|");
}

/** kind and status as people say them: "500", "timeout", "connect"… */
function errorLabel(group) {
  if (group.status !== null && group.status !== undefined) return `HTTP ${group.status}`;
  return group.kind || group.type || "error";
}

export function mountErrors(container) {
  const span = readSpan();
  let gone = false;
  let loading = null;

  const tbody = h("tbody");
  const table = h(
    "table.grid.error-groups",
    { "aria-label": "Error groups, most failed steps first" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        [
          ["Failed steps", "num", "failed steps, and the executions they touched"],
          ["Flow · node", "", "where it failed"],
          ["Dependency", "", "the service the node called"],
          ["Error", "", "kind and HTTP status; one example"],
          ["Seen", "", "first and last time"],
          ["Failing inputs", "", "up to 10 distinct, newest first"],
          ["", "", ""],
        ].map(([text, cls, title]) => h("th", { scope: "col", class: cls, title: title || null, text })),
      ),
    ),
    tbody,
  );
  const empty = h("p.empty", { hidden: true });
  const summary = h("span.muted.page-summary");
  const live = h("span.live", { role: "status", text: "connecting…" });

  const sinceSelect = h(
    "select",
    { name: "span", id: "e-since" },
    span.since ? h("option", { value: `since:${span.since}`, text: `since ${sinceText(span.since)}`, selected: true }) : null,
    WINDOWS.map(([seconds, text]) =>
      h("option", { value: `window:${seconds}`, text, selected: !span.since && (span.window || DEFAULT_WINDOW) === seconds }),
    ),
  );
  const flow = flowSelect("e-flow", span.flowId);
  const form = h(
    "form.filters",
    { role: "search", "aria-label": "Filter error groups" },
    h("label.field.inline", { for: "e-since" }, h("span", { text: "Since" }), sinceSelect),
    h("label.field.inline", { for: "e-flow" }, h("span", { text: "Flow" }), flow),
  );
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("change", () => {
    const [what, value] = sinceSelect.value.split(":");
    span.since = what === "since" ? value : "";
    span.window = what === "window" && Number(value) !== DEFAULT_WINDOW ? Number(value) : 0;
    span.flowId = flow.value;
    history.replaceState(null, "", withQuery("/debugger/errors", { since: span.since, window: span.window, flowId: span.flowId }));
    throttle.refresh();
  });

  container.append(
    h(
      "section.errors-view",
      { "aria-labelledby": "errors-title" },
      h("div.view-head", {}, h("h1", { id: "errors-title", text: "Errors" }), summary, live),
      form,
      h("div.table-wrap", {}, table),
      empty,
    ),
  );
  document.title = "trilha · errors";

  async function load() {
    const controller = new AbortController();
    loading?.abort();
    loading = controller;
    const since = span.since || (span.window ? String(Math.floor(Date.now() / 1000) - span.window) : "");
    let answer;
    try {
      answer = await api(withQuery("/v1/errors", { since, flowId: span.flowId, limit: LIMIT }), { signal: controller.signal });
    } catch (error) {
      if (gone || error.name === "AbortError") return;
      empty.hidden = false;
      setText(empty, `Could not load the errors: ${error.message}`);
      return;
    } finally {
      if (loading === controller) loading = null;
    }
    if (gone) return;
    show(answer);
  }

  function show(answer) {
    const groups = [...(answer.groups || [])].sort(
      (a, b) => (b.count ?? 0) - (a.count ?? 0) || (parseTime(b.lastSeen) ?? 0) - (parseTime(a.lastSeen) ?? 0),
    );
    const from = answer.since ? sinceText(answer.since) : "";
    const steps = groups.reduce((sum, g) => sum + (g.count ?? 0), 0);
    setText(summary, `${groups.length} group${groups.length === 1 ? "" : "s"} · ${steps} failed step${steps === 1 ? "" : "s"}${from ? ` since ${from}` : ""}`);
    empty.hidden = groups.length > 0;
    if (!groups.length) setText(empty, `No step failed${from ? ` since ${from}` : ""}.`);
    // rebuilt whole (tens of rows); the focus goes back to the link it was on
    const focused = document.activeElement?.closest?.("tr[data-key]");
    const focusKey = focused?.dataset.key;
    const focusClass = document.activeElement?.classList?.[0];
    tbody.replaceChildren(...groups.map(groupRow));
    if (focusKey) {
      const again = [...tbody.children].find((tr) => tr.dataset.key === focusKey);
      again?.querySelector(focusClass ? `a.${focusClass}` : "a")?.focus();
    }
  }

  tbody.addEventListener("click", (event) => {
    if (event.target.closest("a, button, details")) return;
    const tr = event.target.closest("tr[data-key]");
    tr?.querySelector("a.open-executions")?.click();
  });

  const throttle = new Throttled(load, { everyMs: 2000, idleMs: 15000 });
  const stream = follow("/v1/events", {
    ...liveIndicator(live),
    onEvent: (type, data) => {
      // a failed step logs at WARN (retried, degraded) or ERROR
      if (data.level === "ERROR" || data.level === "CRITICAL" || data.level === "WARN" || data.context?.error) throttle.changed();
    },
  });
  throttle.refresh();

  return {
    unmount() {
      gone = true;
      stream.stop();
      throttle.stop();
      loading?.abort();
      document.title = "trilha debugger";
    },
  };
}

function groupRow(group) {
  const executions = viewOf(group.executionsUrl);
  const example = group.exampleExecutionId;
  const inputs = (group.inputs || []).slice(0, INPUTS_SHOWN);
  const last = parseTime(group.lastSeen);
  return h(
    "tr",
    {
      dataset: {
        key: groupKey(group),
        flow: group.flowId || "",
        node: group.nodeId || "",
        dependency: group.dependency || "",
        kind: group.kind || "",
        status: group.status ?? "",
      },
    },
    h(
      "td.num.count-cell",
      {},
      h("b", { text: String(group.count ?? 0) }),
      h("span.muted.sub", { text: `in ${group.executions ?? 0} execution${group.executions === 1 ? "" : "s"}` }),
    ),
    h("td.where", {}, h("span.mono.flow", { text: group.flowId || "" }), h("span.mono.node", { text: group.nodeId || "" }), h("span.muted.sub", { text: group.nodeType || "" })),
    h("td.mono.dependency", { text: group.dependency || "—" }),
    h(
      "td.error",
      {},
      h("span.err-label", { text: errorLabel(group) }),
      group.status !== null && group.status !== undefined && group.kind ? h("span.muted", { text: ` (${group.kind})` }) : null,
      h("span.sub.example", { title: [group.type, group.message].filter(Boolean).join(": "), text: group.message || group.type || "" }),
    ),
    h(
      "td.seen",
      {},
      h("span.mono", { text: `${clock(group.firstSeen)} → ${clock(group.lastSeen)}` }),
      h("span.muted.sub", { text: last === null ? "" : `last ${ago(Date.now() - last)} ago` }),
    ),
    h(
      "td.inputs",
      {},
      inputs.length
        ? h("ul.input-list", { "aria-label": "failing inputs" }, inputs.map((input) => h("li", {}, inputCode(input))))
        : h("span.muted", { text: "—" }),
    ),
    h(
      "td.actions",
      {},
      executions
        ? h("a.open-executions", { href: executions, text: openText(group.executions) })
        : null,
      example ? h("a.example", { href: `/debugger/executions/${encodeURIComponent(example)}`, title: example, text: `example ${shortId(example)}` }) : null,
    ),
  );
}
