// The execution list: one page of the newest executions, then kept current by
// the institution's event stream. It is shaped for a thousand live executions:
//  - events are not rendered as they arrive: they are folded per execution into
//    a pending map (so a burst of 50 lines for one execution is one row write)
//    and flushed once per animation frame;
//  - each row keeps references to its cells and a write happens only when a
//    value changed; ages tick once a second by touching two text nodes per row
//    on screen (an IntersectionObserver knows which), never by rebuilding the
//    table, whose fixed layout keeps a text change from re-measuring every row;
//  - the per-state counts come from the server (counts.js), refetched at most
//    every 2 s while events arrive: counting in the page would be wrong past the
//    loaded page.

import { api, withQuery } from "./api.js";
import { AlertBanner, StateCounts } from "./counts.js";
import { ago, clear, h, maskedContact, parseTime, setText, shortId } from "./dom.js";
import { acceptsNew, debounce, filterForm, formFilters, readFilters, sameFilters } from "./filters.js";
import { metrics } from "./metrics.js";
import { follow } from "./sse.js";
import { badge, isTerminal, setBadge, stateOf } from "./status.js";

const PAGE = 200;

export function mountList(container, { me }) {
  const admin = me.role === "admin";
  const filters = readFilters();
  if (!admin) filters.institutionId = ""; // a key sees its own institution only
  const rows = new Map(); // executionId -> Row
  const pending = new Map(); // executionId -> folded events not yet on screen
  let cursor = null;
  let frame = 0;
  let loading = null;
  let gone = false;
  let bufferedDuringLoad = null;

  // ------------------------------------------------------------------ layout
  const tbody = h("tbody");
  const table = h(
    "table.grid.executions",
    { "aria-label": "Executions, newest first" },
    h("colgroup", {}, ["id", "status", "flow", "tenant", "contact", "node", "age", "since"].map((c) => h(`col.c-${c}`))),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Execution", "Status", "Flow", "Institution", "Contact", "Current node", "Age", "In state"].map((name, i) =>
          h("th", { scope: "col", class: i >= 6 ? "num" : "", text: name }),
        ),
      ),
    ),
    tbody,
  );
  const empty = h("p.empty", { hidden: true, text: "No executions match these filters." });
  const more = h("button.btn", { type: "button", text: "Load more", hidden: true });
  const live = h("span.live", { role: "status", text: "connecting…" });
  const summary = h("span.muted.page-summary");
  const form = filterForm(filters, { admin, me });

  container.append(
    h(
      "section.list-view",
      { "aria-labelledby": "list-title" },
      h("div.view-head", {}, h("h1", { id: "list-title", text: "Executions" }), summary, live),
      form,
      h("div.table-wrap", {}, table),
      empty,
      h("div.more", {}, more),
    ),
  );

  const counts = new StateCounts(document.getElementById("counts"), filters, { admin });
  const alerts = new AlertBanner(document.getElementById("alerts"));

  // ---------------------------------------------------------------- filters
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("change", () => applyFilters());
  form.addEventListener("input", debounce(() => applyFilters(), 400));
  function applyFilters() {
    const next = formFilters(form);
    if (sameFilters(next, filters)) return;
    Object.assign(filters, next);
    history.replaceState(null, "", withQuery("/debugger/", filters));
    counts.mark();
    reload();
  }

  more.addEventListener("click", () => loadPage(cursor));

  tbody.addEventListener("click", (event) => {
    if (event.target.closest("a, button")) return;
    const tr = event.target.closest("tr[data-id]");
    if (tr) tr.querySelector("a").click();
  });

  // ------------------------------------------------------------------ rows
  async function loadPage(from) {
    const params = { ...filters, limit: PAGE, cursor: from };
    const controller = new AbortController();
    loading?.abort();
    loading = controller;
    more.disabled = true;
    if (!from) bufferedDuringLoad = [];
    try {
      const page = await api(withQuery("/v1/executions", params), { signal: controller.signal });
      if (gone || controller.signal.aborted) return;
      if (!from) {
        clear(tbody);
        rows.clear();
        watcher.disconnect();
        visible.clear();
      }
      const fragment = document.createDocumentFragment();
      for (const item of page.executions) {
        if (rows.has(item.executionId)) continue;
        const row = new Row(item);
        rows.set(row.id, row);
        watcher.observe(row.tr);
        fragment.append(row.tr);
      }
      tbody.append(fragment);
      metrics.rows = rows.size;
      cursor = page.nextCursor;
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
      setText(summary, `${rows.size} shown${cursor ? " (more below)" : ""}`);
      if (!from) {
        // lines that arrived while the page was on its way: apply those newer than the row
        for (const [type, data] of bufferedDuringLoad || []) ingest(type, data);
        bufferedDuringLoad = null;
        if (metrics.firstRenderMs === null) requestAnimationFrame(() => (metrics.firstRenderMs ??= performance.now()));
      }
    } catch (error) {
      if (error.name === "AbortError" || gone) return;
      if (!from) bufferedDuringLoad = null;
      setText(summary, "");
      empty.hidden = false;
      empty.textContent = `Could not load executions: ${error.message}`;
    } finally {
      if (loading === controller) loading = null;
      more.disabled = false;
    }
  }

  function reload() {
    cursor = null;
    more.hidden = true;
    empty.textContent = "No executions match these filters.";
    loadPage(null);
    counts.refresh();
  }

  // ----------------------------------------------------------------- events
  function ingest(type, data) {
    const id = data.executionId;
    if (!id) return;
    if (admin && filters.institutionId && data.institutionId !== filters.institutionId) return;
    let fold = pending.get(id);
    if (!fold) {
      fold = { events: 0 };
      pending.set(id, fold);
    }
    fold.events += 1;
    const at = data.timestamp;
    if (data.message === "execution.started") fold.started = data;
    if (data.status && data.status !== (fold.status ?? rows.get(id)?.data.status)) fold.statusAt = at;
    if (data.status) fold.status = data.status;
    if (data.nodeId) fold.nodeId = data.nodeId;
    fold.at = at;
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    if (gone) return;
    let applied = 0;
    const fresh = [];
    for (const [id, fold] of pending) {
      let row = rows.get(id);
      if (!row && fold.started && acceptsNew(filters, fold)) {
        row = new Row(startedSummary(fold.started));
        rows.set(id, row);
        watcher.observe(row.tr);
        fresh.push(row);
      }
      if (!row) continue; // not on this page: the counts cover it
      row.apply(fold, filters);
      applied += fold.events;
    }
    pending.clear();
    if (fresh.length) {
      const fragment = document.createDocumentFragment();
      for (let i = fresh.length - 1; i >= 0; i--) fragment.append(fresh[i].tr);
      tbody.prepend(fragment);
      empty.hidden = true;
      metrics.rows = rows.size;
      setText(summary, `${rows.size} shown${cursor ? " (more below)" : ""}`);
    }
    metrics.eventsApplied += applied;
    metrics.renders += 1;
  }

  const stream = follow("/v1/events", {
    onOpen: () => {
      setText(live, "live");
      live.className = "live on";
    },
    onDrop: () => {
      setText(live, "reconnecting…");
      live.className = "live off";
    },
    onFatal: (status) => {
      setText(live, `no live updates (HTTP ${status})`);
      live.className = "live off";
    },
    onEvent: (type, data) => {
      metrics.eventsReceived += 1;
      if (bufferedDuringLoad) bufferedDuringLoad.push([type, data]);
      else ingest(type, data);
      counts.changed();
    },
  });

  // ------------------------------------------------------------------- tick
  // only rows on screen tick; a row scrolling into view catches up at once
  const visible = new Set();
  const watcher = new IntersectionObserver((entries) => {
    const now = Date.now();
    for (const entry of entries) {
      const row = rows.get(entry.target.dataset.id);
      if (!row) continue;
      if (entry.isIntersecting) {
        visible.add(row);
        row.tick(now);
      } else visible.delete(row);
    }
  });
  const tick = setInterval(() => {
    const now = Date.now();
    for (const row of visible) row.tick(now);
  }, 1000);

  reload();

  return {
    unmount() {
      gone = true;
      stream.stop();
      loading?.abort();
      cancelAnimationFrame(frame);
      clearInterval(tick);
      watcher.disconnect();
      counts.stop();
      alerts.stop();
    },
  };
}

// -------------------------------------------------------------------- rows

/** One table row: its data, its element and direct references to the cells that change. */
class Row {
  constructor(data) {
    this.id = data.executionId;
    this.data = data;
    this.created = parseTime(data.createdAt);
    this.since = parseTime(data.statusSince) ?? parseTime(data.updatedAt) ?? this.created;
    this.updated = parseTime(data.updatedAt) ?? this.created;
    this.badge = badge(data.status);
    this.node = h("td.mono.node", { text: data.currentNodeId || "—" });
    this.age = h("td.num", {});
    this.inState = h("td.num", {});
    const link = h("a.mono", { href: `/debugger/executions/${encodeURIComponent(this.id)}`, title: this.id, text: shortId(this.id) });
    const first = h("td.id", {}, link);
    if (data.error) first.append(h("span.err-mark", { title: `error: ${data.error.message || data.error.type || ""}`, text: "error" }));
    this.tr = h(
      "tr",
      { dataset: { id: this.id } },
      first,
      h("td", {}, this.badge),
      h("td.mono", { text: data.flowId || "" }),
      h("td", { text: data.institutionId || "" }),
      h("td.mono", { text: maskedContact(data) }),
      this.node,
      this.age,
      this.inState,
    );
    this.tr.classList.toggle("ended", isTerminal(data.status));
    this.tick(Date.now());
  }

  apply(fold, filters) {
    const eventTime = parseTime(fold.at);
    if (eventTime !== null && this.updated !== null && eventTime < this.updated) return; // older than the row
    if (eventTime !== null) this.updated = eventTime;
    if (fold.status && fold.status !== this.data.status) {
      this.data.status = fold.status;
      this.since = parseTime(fold.statusAt) ?? eventTime ?? Date.now();
      setBadge(this.badge, fold.status);
      this.tr.classList.toggle("ended", isTerminal(fold.status));
      this.tr.classList.toggle("stale", Boolean(filters.status) && filters.status !== fold.status);
      if (this.tr.classList.contains("stale")) this.tr.title = `now ${stateOf(fold.status).label}: no longer matches the filter`;
      else this.tr.removeAttribute("title");
    }
    if (fold.nodeId && fold.nodeId !== this.data.currentNodeId) {
      this.data.currentNodeId = fold.nodeId;
      setText(this.node, fold.nodeId);
    }
  }

  tick(now) {
    setText(this.age, ago(this.created === null ? null : now - this.created));
    setText(this.inState, ago(this.since === null ? null : now - this.since));
  }
}

function startedSummary(line) {
  const context = line.context || {};
  return {
    executionId: line.executionId,
    flowId: line.flowId,
    institutionId: line.institutionId,
    conversationId: context.conversationId,
    contactMasked: context.contactId,
    status: line.status,
    currentNodeId: line.nodeId,
    createdAt: line.timestamp,
    updatedAt: line.timestamp,
    statusSince: line.timestamp,
    error: null,
  };
}
