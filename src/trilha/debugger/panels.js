// The execution view's read-only panels: transcript, step timeline, logs and
// state history. Each is a small class with an `el` and an `update(data)` that
// rebuilds its own body from the latest answer (these lists are an execution's
// own, tens to hundreds of items, so a rebuild is cheaper than diffing), except
// the logs, which arrive one line at a time from the stream and are appended.
// The timeline fits its panel at laptop width (fixed layout, no sideways
// scroll): long errors and outputs show their start and open to the whole
// value in place (<details>), and the step's duration sits under its start.
// A message's body (buttons, a list, media, a place) is drawn by content.js.

import { clear, clock, duration, h, jsonLine, jsonPretty, setText } from "./dom.js";
import { messageBody } from "./content.js";
import { deliveryMark } from "./delivery.js";
import { badge } from "./status.js";

export class TranscriptPanel {
  constructor() {
    this.list = h("ol.chat", { "aria-label": "Conversation" });
    this.empty = h("p.empty", { text: "Nothing said yet." });
    this.el = h("div.panel-body", {}, this.list, this.empty);
    // each message's body, kept from one answer to the next: a rebuild every few
    // seconds would otherwise fetch every thumbnail again (only delivery marks change)
    this.bodies = new Map();
  }

  update(transcript) {
    const entries = transcript || [];
    this.empty.hidden = entries.length > 0;
    clear(this.list);
    const bodies = new Map();
    for (const entry of entries) {
      // a person holding the conversation (`agent`) speaks from the bot's side
      const who = entry.from === "contact" ? "contact" : entry.from === "agent" ? "agent" : "bot";
      const key = JSON.stringify([who, entry.at, entry.text, entry.content ?? null]);
      // (a node sits in one place: a second identical message gets its own body)
      const kept = bodies.has(key) ? undefined : this.bodies.get(key);
      const body = kept ?? h("div.body", {}, messageBody(entry));
      if (!bodies.has(key)) bodies.set(key, body);
      // a message to the contact tells where its delivery stands (ticks, a clock, a red mark)
      const outgoing = who !== "contact";
      const mark = outgoing ? deliveryMark(entry) : null;
      const label = who === "agent" ? `person · ${entry.agentId || "?"}` : who;
      this.list.append(
        h(
          `li.bubble.${who}${outgoing && entry.undelivered ? ".undelivered" : ""}`,
          { dataset: { type: entry.content?.type ?? "text" } },
          h("span.who", { text: label }),
          body,
          h("span.meta", {}, h("time", { datetime: entry.at || "", text: clock(entry.at) }), mark),
        ),
      );
    }
    this.bodies = bodies;
  }
}

const TIMELINE_COLUMNS = [
  ["seq", "#", "the step's number"],
  ["node", "Node", "the node the step ran, and its type"],
  ["state", "State after", "the execution's state once the step was over"],
  ["started", "Started", "when the step started, and how long it took"],
  ["attempt", "Attempt", "which attempt at this node"],
  ["error", "Error", "the step's error, if it failed"],
  ["output", "Output", "what the step produced"],
];

export class TimelinePanel {
  constructor() {
    this.body = h("tbody");
    this.empty = h("p.empty", { text: "No step has run yet." });
    this.el = h(
      "div.panel-body",
      {},
      h(
        "div.table-wrap",
        {},
        h(
          "table.grid.compact.timeline",
          { "aria-label": "Steps" },
          h("colgroup", {}, TIMELINE_COLUMNS.map(([id]) => h(`col.c-${id}`))),
          h("thead", {}, h("tr", {}, TIMELINE_COLUMNS.map(([, text, title]) => h("th", { scope: "col", text, title })))),
          this.body,
        ),
      ),
      this.empty,
    );
  }

  update(steps) {
    const list = steps || [];
    this.empty.hidden = list.length > 0;
    clear(this.body);
    for (const step of list) {
      this.body.append(
        h(
          `tr${step.error ? ".failed" : ""}`,
          { dataset: { seq: step.seq } },
          h("td.num", { text: step.seq }),
          h("td.node", {}, h("span.mono", { text: step.nodeId || "—" }), h("span.muted.type", { text: step.nodeType || "" })),
          h("td", {}, badge(step.status)),
          h(
            "td.started",
            {},
            h("span.mono", { text: clock(step.startedAt) }),
            h("span.muted.took", { text: step.duration === null || step.duration === undefined ? "" : `took ${duration(step.duration)}` }),
          ),
          h("td.num", { text: step.attempt ?? "" }),
          h("td.error-cell", {}, step.error ? clipped(errorText(step.error), 90, "error") : ""),
          h("td.output", {}, valueDetails(step.output, 40)),
        ),
      );
    }
  }
}

function errorText(error) {
  if (typeof error === "string") return error;
  const text = [error.type, error.code, error.message].filter(Boolean).join(": ");
  return text || jsonLine(error);
}

/** Text that wraps in its cell, or its start opening to all of it when longer than `max`. */
function clipped(text, max, what) {
  if (text.length <= max) return h("span", { text });
  return h(
    "details.value",
    {},
    h("summary", { title: `show the whole ${what}` }, h("span", { text: text.slice(0, max - 1) + "…" })),
    h("pre", { text }),
  );
}

/** A JSON value: one line, expandable to the whole thing when it is long. */
export function valueDetails(value, max = 80) {
  if (value === null || value === undefined) return h("span.muted", { text: "—" });
  const line = jsonLine(value, max);
  if (!line.endsWith("…")) return h("code", { text: line });
  const full = jsonPretty(value);
  return h("details.value", {}, h("summary", { title: "show the whole value" }, h("code", { text: line })), h("pre", { text: full }));
}

const LEVELS = { DEBUG: 10, INFO: 20, WARN: 30, WARNING: 30, ERROR: 40, CRITICAL: 50 };

export class LogsPanel {
  constructor() {
    this.lines = [];
    this.minimum = "DEBUG";
    this.select = h(
      "select",
      { id: "log-level", name: "level" },
      ["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"].map((l) => h("option", { value: l, text: l === "DEBUG" ? "all (DEBUG+)" : `${l}+` })),
    );
    this.select.addEventListener("change", () => {
      this.minimum = this.select.value;
      this.render();
    });
    this.count = h("span.muted");
    this.list = h("ol.logs", { "aria-label": "Log lines" });
    this.el = h(
      "div.panel-body",
      {},
      h("div.panel-tools", {}, h("label.field.inline", { for: "log-level" }, h("span", { text: "Level" }), this.select), this.count),
      this.list,
    );
  }

  /** Lines from the execution's stream (oldest first, each once). */
  add(lines) {
    const threshold = LEVELS[this.minimum];
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      this.lines.push(line);
      if ((LEVELS[line.level] ?? 0) >= threshold) fragment.append(logItem(line));
    }
    const stick = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 8;
    this.list.append(fragment);
    if (stick) this.list.scrollTop = this.list.scrollHeight;
    this.updateCount();
  }

  render() {
    const threshold = LEVELS[this.minimum];
    clear(this.list);
    const fragment = document.createDocumentFragment();
    for (const line of this.lines) if ((LEVELS[line.level] ?? 0) >= threshold) fragment.append(logItem(line));
    this.list.append(fragment);
    this.updateCount();
  }

  updateCount() {
    setText(this.count, `${this.list.childElementCount} of ${this.lines.length} lines`);
  }
}

function logItem(line) {
  const context = line.context || {};
  const extra = {};
  if (context.duration !== undefined) extra.duration = context.duration;
  if (context.error) extra.error = context.error;
  if (context.metadata) Object.assign(extra, context.metadata);
  return h(
    `li.log.l-${String(line.level).toLowerCase()}`,
    {},
    h("time.mono", { datetime: line.timestamp || "", text: clock(line.timestamp) }),
    h("span.level", { text: line.level }),
    h("span.mono.node", { text: line.nodeId || "" }),
    h("span.msg", { text: line.message }),
    Object.keys(extra).length ? h("code.ctx", { text: jsonLine(extra, 300) }) : null,
  );
}

export class HistoryPanel {
  constructor() {
    this.states = h("tbody");
    this.audit = h("tbody");
    this.auditEmpty = h("p.empty", { text: "No operator has touched this execution." });
    const table = (label, headers, body) =>
      h(
        "div.table-wrap",
        {},
        h("table.grid.compact", { "aria-label": label }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))), body),
      );
    this.el = h(
      "div.panel-body",
      {},
      h("h3", { text: "State history" }),
      table("State history", ["At", "From", "To", "Reason", "Actor", "Node"], this.states),
      h("h3", { text: "Operator audit" }),
      table("Operator audit", ["At", "Operation", "Actor", "Reason", "Change"], this.audit),
      this.auditEmpty,
    );
  }

  update(answer) {
    clear(this.states);
    for (const t of answer.history || []) {
      this.states.append(
        h(
          "tr",
          {},
          h("td.mono.nowrap", { text: clock(t.at) }),
          h("td", {}, t.from ? badge(t.from) : h("span.muted", { text: "start" })),
          h("td", {}, badge(t.to)),
          h("td.wide", { text: t.reason || "" }),
          h("td.mono", { text: t.actor || "" }),
          h("td.mono", { text: t.nodeId || "" }),
        ),
      );
    }
    clear(this.audit);
    const audit = answer.audit || [];
    this.auditEmpty.hidden = audit.length > 0;
    for (const a of audit) {
      const change = [a.from && a.to ? `${a.from} → ${a.to}` : "", a.details && Object.keys(a.details).length ? jsonLine(a.details, 120) : ""]
        .filter(Boolean)
        .join(" · ");
      this.audit.append(
        h(
          "tr",
          {},
          h("td.mono.nowrap", { text: clock(a.at) }),
          h("td", { text: a.operation }),
          h("td.mono", { text: a.actor || "" }),
          h("td.wide", { text: a.reason || "" }),
          h("td.wide", { text: change }),
        ),
      );
    }
  }
}
