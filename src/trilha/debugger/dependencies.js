// The dependencies the key's institution may call (GET /v1/dependencies), with this
// server process's circuit breaker for each: its state (open flagged red), when it
// last opened and closed and why (the call that tripped it: request, status,
// message), its recent calls' success rate and latency, the calls it refused and
// how many executions wait for it. Two uses:
//  - the Dependencies view, a table kept live (every event refetches at most every
//    2 s; every 3 s when quiet, since a breaker moves on its own clock);
//  - DependencyStates, the same answer kept for the list and the execution page,
//    which flag an execution waiting for a dependency whose breaker is open.

import { api } from "./api.js";
import { ago, clock, h, parseTime, setText } from "./dom.js";
import { Throttled } from "./refresh.js";
import { follow, liveIndicator } from "./sse.js";

const STATES = {
  closed: { label: "closed", glyph: "●", title: "calls go through" },
  open: { label: "open", glyph: "✕", title: "calls are refused until it lets probes through" },
  half_open: { label: "half-open", glyph: "◐", title: "a few probe calls decide whether it closes" },
};
/** the least time between two reads of the breakers for the flags */
const FLAGS_EVERY_MS = 2000;

function stateInfo(state) {
  return STATES[state] || { label: state || "unknown", glyph: "?", title: "" };
}

/** A breaker state as a badge (text and glyph; the colour is a third cue). */
export function breakerBadge(state) {
  const info = stateInfo(state);
  return h(`span.breaker.b-${state || "unknown"}`, { title: info.title }, h("span.glyph", { "aria-hidden": "true", text: info.glyph }), h("span.label", { text: info.label }));
}

/** Why a breaker last opened, in one line: the reason, then the call that tripped it. */
export function tripText(trip) {
  if (!trip) return "";
  const call = [trip.request, trip.status !== null && trip.status !== undefined ? `answered ${trip.status}` : trip.kind].filter(Boolean).join(" ");
  return [call, trip.reason ? `(${trip.reason})` : ""].filter(Boolean).join(" ");
}

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${Math.round(rate * 1000) / 10}%`;
}

// "20 calls, 35% ok · 13 failed, none counting against it": a 500 the breaker does
// not count still shows as a call that failed
function recentText(recent) {
  const calls = recent.calls ?? 0;
  const head = `${calls} call${calls === 1 ? "" : "s"}, ${percent(recent.successRate)} ok`;
  const errors = recent.errors ?? 0;
  if (!errors) return head;
  const counted = recent.failures ?? 0;
  return `${head} · ${errors} failed, ${counted ? counted : "none"} counting against it`;
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

/** The breakers, kept for flags: isOpen(name), describe(name). */
export class DependencyStates {
  /** onChange(): called after each answer, to redraw the flags */
  constructor(onChange) {
    this.byName = new Map();
    this.onChange = onChange;
    this.inFlight = false;
    this.last = 0;
    this.gone = false;
  }

  async refresh() {
    if (this.inFlight || this.gone || Date.now() - this.last < FLAGS_EVERY_MS) return;
    this.inFlight = true;
    this.last = Date.now();
    try {
      const answer = await api("/v1/dependencies");
      if (this.gone) return;
      this.byName = new Map((answer.dependencies || []).map((d) => [d.name, d]));
      this.onChange();
    } catch {
      // the flags are a help: without an answer they stay as they were
    } finally {
      this.inFlight = false;
    }
  }

  /** Whether calls to `name` are being refused or probed (not closed). */
  isOpen(name) {
    const state = this.byName.get(name)?.state;
    return state === "open" || state === "half_open";
  }

  /** The flag's words: "crm circuit open" / "crm circuit half-open". */
  flagText(name) {
    return `${name} circuit ${stateInfo(this.byName.get(name)?.state).label}`;
  }

  /** A sentence on the breaker of `name`, for a title or a note. */
  describe(name) {
    const dep = this.byName.get(name);
    if (!dep) return "";
    const parts = [`The ${name} circuit breaker is ${stateInfo(dep.state).label}`];
    if (dep.openedAt) parts.push(`since ${clock(dep.openedAt)}`);
    const why = tripText(dep.trip);
    if (why) parts.push(`after ${why}`);
    let text = parts.join(" ");
    if (dep.state === "open" && dep.retryAt) text += `; it lets probes through from ${clock(dep.retryAt)}`;
    return `${text}.`;
  }

  stop() {
    this.gone = true;
  }
}

/** The flag on an execution waiting for `name` (hidden until its breaker is open). */
export function dependencyFlag(name) {
  return h("span.dep-flag", { hidden: true, dataset: { dependency: name } }, h("span.glyph", { "aria-hidden": "true", text: "⚠" }), h("span.label", { text: `${name} circuit open` }));
}

/** Show or hide `flag` for `name` from `states` (null: unknown, hidden). */
export function updateDependencyFlag(flag, name, states) {
  const open = Boolean(name && states?.isOpen(name));
  flag.hidden = !open;
  if (!open) return;
  setText(flag.lastChild, states.flagText(name));
  flag.title = states.describe(name);
}

// -------------------------------------------------------------------- the view

export function mountDependencies(container) {
  let gone = false;
  const tbody = h("tbody");
  const summary = h("span.muted.page-summary");
  const live = h("span.live", { role: "status", text: "connecting…" });
  const empty = h("p.empty", { hidden: true });
  const columns = [
    ["Dependency", "", ""],
    ["Breaker", "", "its state in this server process"],
    ["Last opened · closed", "", ""],
    ["Why it last opened", "", "the call that tripped it"],
    ["Recent calls", "", "the breaker's window: success rate, latency p50 / p95"],
    ["Refused", "num", "calls refused since it last opened"],
    ["Waiting", "num", "executions waiting for it"],
    ["Counts against it", "", "the failures that open the breaker"],
  ];
  container.append(
    h(
      "section.deps-view",
      { "aria-labelledby": "deps-title" },
      h("div.view-head", {}, h("h1", { id: "deps-title", text: "Dependencies" }), summary, live),
      h(
        "div.table-wrap",
        {},
        h(
          "table.grid.dependencies",
          { "aria-label": "Dependencies and their circuit breakers" },
          h("thead", {}, h("tr", {}, columns.map(([text, cls, title]) => h("th", { scope: "col", class: cls, title: title || null, text })))),
          tbody,
        ),
      ),
      empty,
      h("p.muted.note", {
        text: "Breakers are kept per server process: with several, each shows its own. A failure of one request (a 500, a 404) is retried and falls back without opening the breaker, unless the dependency counts it.",
      }),
    ),
  );
  document.title = "trilha · dependencies";

  async function load() {
    let answer;
    try {
      answer = await api("/v1/dependencies");
    } catch (error) {
      if (gone) return;
      empty.hidden = false;
      setText(empty, `Could not load the dependencies: ${error.message}`);
      return;
    }
    if (gone) return;
    const deps = answer.dependencies || [];
    const open = deps.filter((d) => d.state !== "closed").length;
    setText(summary, `${deps.length} dependenc${deps.length === 1 ? "y" : "ies"}${open ? ` · ${open} not closed` : ""}`);
    empty.hidden = deps.length > 0;
    if (!deps.length) setText(empty, "This institution may call no declared dependency.");
    tbody.replaceChildren(...deps.map(dependencyRow));
  }

  const throttle = new Throttled(load, { everyMs: 2000, idleMs: 3000 });
  const stream = follow("/v1/events", {
    ...liveIndicator(live),
    onEvent: () => throttle.changed(),
  });
  throttle.refresh();
  return {
    unmount() {
      gone = true;
      stream.stop();
      throttle.stop();
      document.title = "trilha debugger";
    },
  };
}

function dependencyRow(dep) {
  const now = Date.now();
  const when = (iso) => {
    const t = parseTime(iso);
    return t === null ? "never" : `${clock(iso)} (${ago(now - t)} ago)`;
  };
  const recent = dep.recent || {};
  const trip = dep.trip;
  const retry = parseTime(dep.retryAt);
  return h(
    `tr.dep.b-${dep.state}`,
    { dataset: { name: dep.name, state: dep.state } },
    h("td.mono.name", { text: dep.name }),
    h(
      "td.state",
      {},
      breakerBadge(dep.state),
      dep.state === "open" && retry !== null
        ? h("span.muted.sub", { text: retry > now ? `probes from ${clock(dep.retryAt)} (in ${ago(retry - now)})` : "probes due now" })
        : null,
    ),
    h("td.when", {}, h("span.sub", { text: `opened ${when(dep.openedAt)}` }), h("span.sub", { text: `closed ${when(dep.closedAt)}` })),
    h(
      "td.trip",
      {},
      trip
        ? [
            h("span.sub.reason", { text: trip.reason || "" }),
            trip.request ? h("code.sub.request", { text: trip.request }) : null,
            h("span.sub", {
              // the message often repeats the request: then the status says it all
              text: [
                trip.status !== null && trip.status !== undefined ? `answered ${trip.status}` : trip.kind,
                trip.message && !(trip.request && trip.message.includes(trip.request)) ? trip.message : "",
              ]
                .filter(Boolean)
                .join(": "),
            }),
          ]
        : h("span.muted", { text: "never opened" }),
    ),
    h(
      "td.recent",
      {},
      h("span.sub", { text: recentText(recent) }),
      h("span.muted.sub", { text: `p50 ${ms(recent.p50Ms)} · p95 ${ms(recent.p95Ms)}` }),
    ),
    h("td.num", { text: String(dep.refused ?? 0) }),
    h("td.num", { text: String(dep.waitingExecutions ?? 0) }),
    h("td.counts-against", {}, (dep.count || []).map((what) => h("code.term", { text: what }))),
  );
}
