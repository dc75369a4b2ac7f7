// The Outbox view: the bot's messages that did not reach the contact. GET
// /v1/outbox lists them oldest first, a page at a time: `dead` (every attempt
// failed: the dispatcher gave up) or `pending` (waiting for another attempt),
// chosen by the chips, kept in the URL (/debugger/outbox?status=pending) so a
// link to either can be shared; the TrilhaDeadMessages alert's evidence opens
// the dead ones. Each row says when the message was created, to which
// conversation and contact (masked, as the server masks it), what it said (as
// text: never parsed as HTML), how many attempts failed and why the last did,
// when it is tried next, and links to its execution.
//
// An operator or admin key may redrive a message (POST /v1/outbox/{id}/redrive):
// asked first in the confirmation dialog, then the server's answer is toasted
// (a 409, 404 or 403 as the problem's own detail). Redriven, the message is due
// now with its attempts reset: it leaves the dead list and is sent with its own
// idempotency key. A viewer key sees the button disabled, with the reason.
//
// Kept live like the Errors view: a delivery line on the institution's event
// stream (queued, delivered, a failed attempt, given up, redriven) refetches at
// most every 2 s, and every 15 s when quiet. A refetch asks again for as many
// messages as are on screen (one request, up to 500), so "Load more" pages stay.

import { api, withQuery } from "./api.js";
import { confirm, refocus, toast } from "./dialog.js";
import { ago, clock, h, maskedContact, parseTime, setText, shortId } from "./dom.js";
import { Throttled } from "./refresh.js";
import { follow, liveIndicator } from "./sse.js";

const PAGE = 50;
const MAX_PAGE = 500; // the API's largest page
const STATUSES = [
  { id: "dead", label: "Dead", glyph: "✕", title: "every attempt failed: given up until redriven" },
  { id: "pending", label: "Pending", glyph: "◷", title: "waiting for another attempt" },
];
/** trail lines that change what the outbox holds */
const LINES = new Set(["message.queued", "message.delivered", "message.delivery_failed", "message.dead", "message.redriven"]);
const VIEWER_REASON = "viewer keys may only read";

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function readStatus() {
  const status = new URLSearchParams(location.search).get("status");
  return STATUSES.some((s) => s.id === status) ? status : "dead";
}

export function mountOutbox(container, { me }) {
  const status = readStatus();
  const admin = me.role === "admin";
  const canRedrive = me.role === "operator" || admin;
  let gone = false;
  let loading = null;
  let paging = false;
  let again = false;
  let messages = [];
  let cursor = null;

  const chips = h(
    "div.outbox-status",
    { role: "group", "aria-label": "Which messages" },
    STATUSES.map((s) =>
      h(
        `a.count.chip-${s.id}${s.id === status ? ".current" : ""}`,
        {
          href: withQuery("/debugger/outbox", { status: s.id === "dead" ? "" : s.id }),
          title: s.title,
          "aria-current": s.id === status ? "true" : null,
          dataset: { status: s.id },
        },
        h("span.glyph", { "aria-hidden": "true", text: s.glyph }),
        h("span.label", { text: s.label }),
      ),
    ),
  );
  const columns = [
    ["created", "Created", ""],
    ["recipient", "Conversation · contact", "the contact masked"],
    ["text", "Message", ""],
    ["status", "Status", ""],
    ["attempts", "Attempts", "failed attempts so far (a redrive resets them)", "num"],
    ["error", "Last error", "why the last attempt failed (masked)"],
    ["next", "Next attempt", ""],
    ["execution", "Execution", ""],
    ["actions", "", ""],
  ];
  const tbody = h("tbody");
  const table = h(
    "table.grid.outbox",
    { "aria-label": status === "dead" ? "Messages given up, oldest first" : "Messages waiting for another attempt, oldest first" },
    h("thead", {}, h("tr", {}, columns.map(([, text, title, cls]) => h("th", { scope: "col", class: cls || "", title: title || null, text })))),
    tbody,
  );
  const summary = h("span.muted.page-summary");
  const live = h("span.live", { role: "status", text: "connecting…" });
  const empty = h("p.empty", { hidden: true });
  const more = h("button.btn", { type: "button", id: "outbox-more", text: "Load more", hidden: true });
  const viewerNote = canRedrive
    ? null
    : h("p.muted.note.redrive-note", { id: "outbox-why", text: `Redrive is disabled: ${VIEWER_REASON}. An operator or admin key can send these messages again.` });

  container.append(
    h(
      "section.outbox-view",
      { "aria-labelledby": "outbox-title" },
      h("div.view-head", {}, h("h1", { id: "outbox-title", text: "Outbox" }), summary, live),
      h("div.filters", {}, chips),
      viewerNote,
      h("div.table-wrap", {}, table),
      empty,
      h("div.more", {}, more),
      h("p.muted.note", {
        text:
          "A redriven message is due now with its attempts reset, and is sent with the same idempotency key, so a channel that received an earlier attempt can recognise the repeat.",
      }),
    ),
  );
  document.title = "trilha · outbox";

  async function load() {
    if (paging) {
      again = true; // "Load more" is on its way: refetch once it is in
      return;
    }
    const controller = new AbortController();
    loading?.abort();
    loading = controller;
    const limit = Math.min(MAX_PAGE, Math.max(PAGE, messages.length));
    let answer;
    try {
      answer = await api(withQuery("/v1/outbox", { status, limit }), { signal: controller.signal });
    } catch (error) {
      if (gone || error.name === "AbortError") return;
      empty.hidden = false;
      setText(empty, `Could not load the outbox: ${error.message}`);
      return;
    } finally {
      if (loading === controller) loading = null;
    }
    if (gone) return;
    messages = answer.messages || [];
    cursor = answer.nextCursor || null;
    show();
  }

  async function loadMore() {
    if (!cursor || paging) return;
    paging = true;
    more.disabled = true;
    if (loading) {
      loading.abort(); // a refetch from the top would not know of this page: again after it
      again = true;
    }
    try {
      const answer = await api(withQuery("/v1/outbox", { status, limit: PAGE, cursor }));
      if (gone) return;
      const known = new Set(messages.map((m) => m.id));
      messages = messages.concat((answer.messages || []).filter((m) => !known.has(m.id)));
      cursor = answer.nextCursor || null;
      show();
    } catch (error) {
      if (!gone) toast(`Could not load more: ${error.message}`, "error");
    } finally {
      paging = false;
      more.disabled = false;
    }
    if (again && !gone) {
      again = false;
      throttle.refresh();
    }
  }

  function show() {
    const n = messages.length;
    setText(summary, `${plural(n, "message")} ${status}${cursor ? " (more below)" : ""}`);
    empty.hidden = n > 0;
    if (!n)
      setText(
        empty,
        status === "dead"
          ? "No message is dead: every message was delivered or is still being tried."
          : "No message is waiting for another attempt.",
      );
    more.hidden = !cursor;
    // rebuilt whole (a page or a few); the focus goes back to the control it was on
    const focusedRow = document.activeElement?.closest?.("tr[data-id]");
    const focusId = focusedRow && tbody.contains(focusedRow) ? focusedRow.dataset.id : null;
    const focusClass = document.activeElement?.classList?.contains("redrive") ? "button.redrive" : "a";
    const now = Date.now();
    tbody.replaceChildren(...messages.map((m) => messageRow(m, now)));
    if (focusId) {
      const row = [...tbody.children].find((tr) => tr.dataset.id === focusId);
      if (row) refocus(row.querySelector(focusClass), row.querySelector("a"));
      else refocus(more, table);
    }
  }

  function messageRow(m, now) {
    const created = parseTime(m.createdAt);
    const next = parseTime(m.nextAttemptAt);
    const spec = STATUSES.find((s) => s.id === m.status) || { id: m.status, label: m.status, glyph: "?", title: "" };
    const redrive = h("button.btn.small.redrive", {
      type: "button",
      text: "Redrive",
      disabled: !canRedrive,
      title: canRedrive ? `Send message ${m.id} again now, its attempts reset` : `Not possible: ${VIEWER_REASON}`,
      "aria-describedby": canRedrive ? null : "outbox-why",
    });
    if (canRedrive) redrive.addEventListener("click", () => redriveOne(m, redrive));
    const cell = (name, attrs, ...content) => h(`td.${name}`, { "data-label": columns.find(([c]) => c === name)[1], ...attrs }, ...content);
    return h(
      `tr.m-${m.status}`,
      { dataset: { id: String(m.id), status: m.status, execution: m.executionId || "" } },
      cell(
        "created",
        {},
        h("span.mono", { text: clock(m.createdAt) }),
        h("span.muted.sub", { text: created === null ? "" : `${ago(now - created)} ago` }),
      ),
      cell(
        "recipient",
        {},
        h("span.mono.conversation", { text: m.conversationId || "" }),
        h("span.sub.contact", { text: maskedContact(m) }),
        admin ? h("span.muted.sub.tenant", { title: "institution", text: m.institutionId || "" }) : null,
      ),
      cell("text", {}, h("span.msg-text", { text: m.text ?? "" })),
      cell(
        "status",
        {},
        h(`span.outbox-badge.st-${spec.id}`, { title: spec.title }, h("span.glyph", { "aria-hidden": "true", text: spec.glyph }), h("span.label", { text: spec.id })),
      ),
      cell("attempts", { class: "attempts num", text: String(m.attempts ?? 0) }),
      cell("error", {}, m.lastError ? h("span.last-error", { text: m.lastError }) : h("span.muted", { text: "—" })),
      cell(
        "next",
        {},
        m.status === "dead" || next === null
          ? h("span.muted", { text: m.status === "dead" ? "— (given up)" : "—" })
          : [h("span.mono", { text: clock(m.nextAttemptAt) }), h("span.muted.sub", { text: next > now ? `in ${ago(next - now)}` : "due now" })],
      ),
      cell(
        "execution",
        {},
        m.executionId
          ? h("a.open-execution", { href: `/debugger/executions/${encodeURIComponent(m.executionId)}`, title: m.executionId, text: `${shortId(m.executionId)} →` })
          : h("span.muted", { text: "—" }),
      ),
      cell("actions", {}, redrive),
    );
  }

  async function redriveOne(m, button) {
    const answer = await confirm({
      title: `Redrive message ${m.id}?`,
      text:
        `Send “${m.text}” to ${maskedContact(m)} (conversation ${m.conversationId}) again now, with its ${plural(m.attempts ?? 0, "failed attempt")} reset. ` +
        "It goes with the same idempotency key, so a channel that got an earlier attempt can recognise the repeat.",
      confirmLabel: "Redrive",
      dismissLabel: "Back",
      noReason: true,
    });
    if (!answer || gone) return;
    button.disabled = true;
    try {
      const item = await api(`/v1/outbox/${encodeURIComponent(m.id)}/redrive`, { method: "POST" });
      toast(`Message ${m.id} redriven: it is ${item?.status || "pending"}, due now, and the dispatcher sends it again.`, "ok");
    } catch (error) {
      toast(`Redrive failed: ${error.message}`, "error");
      button.disabled = false;
    }
    if (gone) return;
    await throttle.refresh();
    const row = [...tbody.children].find((tr) => tr.dataset.id === String(m.id));
    refocus(row?.querySelector("button.redrive"), tbody.querySelector("button.redrive"), more, table);
  }

  more.addEventListener("click", () => loadMore());
  tbody.addEventListener("click", (event) => {
    if (event.target.closest("a, button")) return;
    if (window.getSelection?.().toString()) return; // selecting a message's text
    const tr = event.target.closest("tr[data-id]");
    tr?.querySelector("a.open-execution")?.click();
  });

  const throttle = new Throttled(load, { everyMs: 2000, idleMs: 15000 });
  const stream = follow("/v1/events", {
    ...liveIndicator(live),
    onEvent: (type, data) => {
      if (LINES.has(data?.message)) throttle.changed();
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
