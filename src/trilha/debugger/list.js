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
//    loaded page;
//  - a filtered list follows what comes to match: the events of an execution
//    not in the table are first judged by themselves (filters.js: did it start,
//    enter the filter's state, jump into the flow, log an error; masked
//    conversation/contact can only rule out), and when it may have come to
//    match, that one execution is refetched (GET /v1/executions/{id};
//    coalesced per id, 3 at a time, 10 a second at most, once per 2 s per id:
//    queue.js) and inserted in createdAt order if it matches. What only the
//    server can judge (a step that failed earlier) is asked of the list endpoint
//    narrowed to the execution's conversation. When many are due at once (a
//    thousand live executions), one re-query of the list's first page answers
//    them together, at most once a second; one that still matches by its events
//    but is not in a re-query reaching the loaded page's oldest row is below the
//    page ("Load more" brings it) and is not asked about again. Stuck has no
//    event (it is nothing happening), so a stuck list re-queries every 10 s.
//    A row that stops matching stays, dimmed and marked "no longer matches",
//    until the next reload or filter change: rows never jump out under the
//    pointer, and what just happened to them stays in view.
//  - a list filtered by a failed step (an error group's executions) has a column
//    with each execution's failing input (the request, for a call), so a pattern
//    in them is seen on one page;
//  - a row waiting for a dependency whose circuit breaker is open says so, from
//    GET /v1/dependencies, asked again every few seconds while such rows are shown.
//  - a row with undelivered messages (the summary's `undelivered`: dead, reported
//    failed, pending past due) is flagged with how many. A delivery line that can
//    add one (a failed attempt, a dead message, a `failed` receipt) flags the row at
//    once and has the count read again (GET /v1/executions/{id}; many at once: one
//    re-query of the page), at most every 3 s per execution; one that can only take
//    one away (delivered, redriven, another receipt) does so only for a flagged row,
//    so a healthy stream of deliveries costs no request. A message that becomes late
//    with no line at all (no dispatcher running) shows at the next reload.

import { api, withQuery } from "./api.js";
import { AlertBanner, StateCounts } from "./counts.js";
import { setUndelivered, undeliveredFlag } from "./delivery.js";
import { DependencyStates, dependencyFlag, updateDependencyFlag } from "./dependencies.js";
import { ago, clear, clock, h, maskedContact, parseTime, setText, shortId } from "./dom.js";
import { errorSummary, failingInput, sameError, shortInput } from "./errors.js";
import {
  acceptsNew,
  debounce,
  eventVerdict,
  filterForm,
  flowMatches,
  formFilters,
  narrowed,
  outcomeMatches,
  readFilters,
  ruledOut,
  sameFilters,
  stepFiltered,
  summaryVerdict,
} from "./filters.js";
import { metrics } from "./metrics.js";
import { KeyedQueue } from "./queue.js";
import { follow, liveIndicator } from "./sse.js";
import { isTerminal, setStatusBadges, stateOf, statusBadges } from "./status.js";

const PAGE = 200;
const MAX_PAGE = 500; // the API's largest page
const DEPENDENCIES_EVERY_MS = 5000;
const STUCK_EVERY_MS = 10000;
/** single refetches a re-query may do for executions older than its answer reaches */
const BATCH_SINGLES = 5;
/** trail lines that may make a message undelivered (the row is flagged before the recount) */
const UNDELIVERED_LINES = new Set(["message.delivery_failed", "message.dead"]);
/** trail lines that may settle an undelivered message */
const SETTLING_LINES = new Set(["message.delivered", "message.redriven", "message.status"]);

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
  // what a filtered list needs to take in executions that come to match
  let floor = -Infinity; // createdAt (ms) of the oldest row paged in while more pages remain
  let generation = 0; // bumped when the filters change: older judgments are dropped
  const verdicts = new Map(); // executionId -> "below" (older than the page) | "never" (these filters)
  const held = new Map(); // executionId -> events folded while its refetch is on its way
  const judge = new KeyedQueue((id) => judgeOne(id), {
    concurrency: 3,
    delayMs: 150,
    cooldownMs: 2000,
    minGapMs: 100,
    batch: (ids) => judgeMany(ids),
    batchFrom: 5,
    batchEveryMs: 1000,
  });
  let stuckTimer = 0;
  let staleCount = 0;
  // rows whose messages' delivery changed: their undelivered count is read again
  const recounts = new KeyedQueue((id) => recountOne(id), {
    concurrency: 2,
    delayMs: 300,
    cooldownMs: 3000,
    minGapMs: 200,
    batch: (ids) => recountMany(ids),
    batchFrom: 5,
    batchEveryMs: 3000,
  });

  // ------------------------------------------------------------------ layout
  // the failed-step filters change only by a link (a new view), so the column is fixed here
  const withInput = stepFiltered(filters);
  const columns = [
    ["id", "Execution"],
    ["status", "Status"],
    ["flow", "Flow"],
    ["tenant", "Institution"],
    ["contact", "Contact"],
    withInput ? ["input", "Failing input", "the failed step's input: the request, for a call"] : null,
    ["node", "Current node"],
    ["age", "Age", "", "num"],
    ["since", "In state", "", "num"],
  ].filter(Boolean);
  const tbody = h("tbody");
  const table = h(
    "table.grid.executions",
    { "aria-label": "Executions, newest first", class: `grid executions${withInput ? " with-input" : ""}` },
    h("colgroup", {}, columns.map(([c]) => h(`col.c-${c}`))),
    h("thead", {}, h("tr", {}, columns.map(([, name, title, cls]) => h("th", { scope: "col", class: cls || "", title: title || null, text: name })))),
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
  // breakers of the dependencies rows wait for: asked for only while such rows are shown
  const dependencies = new DependencyStates(() => {
    for (const row of rows.values()) row.showDependency(dependencies);
  });
  const dependencyWatch = setInterval(() => {
    if (anyWaitsForDependency()) dependencies.refresh();
  }, DEPENDENCIES_EVERY_MS);
  function anyWaitsForDependency() {
    for (const row of rows.values()) if (row.dependency()) return true;
    return false;
  }

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
    if (event.target.closest("a, button, details")) return;
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
        staleCount = 0;
      }
      const fragment = document.createDocumentFragment();
      for (const item of page.executions) {
        if (rows.has(item.executionId)) continue;
        const row = new Row(item, withInput);
        rows.set(row.id, row);
        watcher.observe(row.tr);
        fragment.append(row.tr);
      }
      tbody.append(fragment);
      if (anyWaitsForDependency()) dependencies.refresh();
      metrics.rows = rows.size;
      cursor = page.nextCursor;
      const last = page.executions[page.executions.length - 1];
      floor = cursor && last ? parseTime(last.createdAt) ?? -Infinity : -Infinity;
      if (from) for (const [id, verdict] of verdicts) if (verdict === "below") verdicts.delete(id); // the page reaches lower now
      more.hidden = !cursor;
      empty.hidden = rows.size > 0;
      showSummary();
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
    floor = -Infinity;
    generation += 1;
    verdicts.clear();
    held.clear();
    judge.clear();
    clearInterval(stuckTimer);
    stuckTimer = filters.stuck ? setInterval(requeryStuck, STUCK_EVERY_MS) : 0;
    more.hidden = true;
    empty.textContent = "No executions match these filters.";
    loadPage(null);
    counts.refresh();
  }

  function showSummary() {
    const stale = staleCount ? ` · ${staleCount} no longer match${staleCount === 1 ? "es" : ""}` : "";
    setText(summary, `${rows.size} shown${stale}${cursor ? " (more below)" : ""}`);
  }

  /** Put a row built after the first page (it came to match) where createdAt puts it. */
  function insertRow(row) {
    rows.set(row.id, row);
    watcher.observe(row.tr);
    let before = null;
    for (const tr of tbody.children) {
      const other = rows.get(tr.dataset.id);
      if (other && other !== row && newer(row, other)) {
        before = tr;
        break;
      }
    }
    tbody.insertBefore(row.tr, before);
    empty.hidden = true;
    metrics.rows = rows.size;
    metrics.rowsInserted += 1;
    showSummary();
  }

  function noteStale(row, was) {
    if (row.stale === was) return;
    staleCount += row.stale ? 1 : -1;
    showSummary();
  }

  // --------------------------------------------------- coming to match a filter
  /** An event (folded) for an execution not in the table, while the list is filtered. */
  function consider(id, fold) {
    if (verdicts.has(id)) return;
    if (eventVerdict(filters, fold) === "maybe") {
      hold(id, fold);
      judge.add(id);
    } else if (judge.has(id)) hold(id, fold); // its refetch is on its way: keep what came since
  }

  function hold(id, fold) {
    const kept = held.get(id);
    if (!kept) {
      held.set(id, { ...fold });
      return;
    }
    kept.events += fold.events;
    if (fold.status && fold.status !== kept.status) kept.statusAt = fold.statusAt ?? fold.at;
    for (const key of ["status", "nodeId", "flowId", "conversationId", "contactId", "at"]) if (fold[key]) kept[key] = fold[key];
  }

  /** Put a row for `item` (a summary that matches now) unless it is below the loaded page. */
  function take(item) {
    const id = item.executionId;
    if (rows.has(id)) return;
    const created = parseTime(item.createdAt);
    if (created !== null && created < floor) {
      verdicts.set(id, "below"); // "Load more" brings it, in its place
      held.delete(id);
      return;
    }
    const fold = held.get(id);
    held.delete(id);
    const row = new Row(item, withInput);
    insertRow(row);
    row.showDependency(dependencies);
    if (fold) row.apply(fold, filters);
    noteStale(row, false);
  }

  /**
   * A re-query of the list's first page: rows for what matches and is not in the
   * table yet; {found, covered}: the ids it returned, and whether it reached the
   * loaded page's oldest row (so anything newer that is not in it does not match).
   */
  function merge(page) {
    const items = page.executions || [];
    const found = new Set();
    for (const item of items) {
      found.add(item.executionId);
      const row = rows.get(item.executionId);
      if (!row) take(item);
      else {
        const was = row.stale;
        row.setServerMismatch(null);
        noteStale(row, was);
      }
    }
    const last = items[items.length - 1];
    const covered = !page.nextCursor || (last !== undefined && (parseTime(last.createdAt) ?? Infinity) <= floor);
    return { found, covered };
  }

  /** Many executions may have come to match at once: one re-query answers them together. */
  async function judgeMany(ids) {
    const gen = generation;
    const before = new Map(ids.map((id) => [id, held.get(id)?.events ?? 0]));
    metrics.requeries += 1;
    let page;
    try {
      // a little past the loaded page, so the answer reaches its oldest row even when a
      // few of the newer ones stopped matching meanwhile
      page = await api(withQuery("/v1/executions", { ...filters, limit: Math.min(MAX_PAGE, rows.size + 50) }));
    } catch {
      return; // their next events ask again
    }
    if (gone || gen !== generation) return;
    const { found, covered } = merge(page);
    const singles = [];
    for (const id of ids) {
      if (found.has(id) || rows.has(id)) continue;
      const fold = held.get(id);
      if ((fold?.events ?? 0) !== before.get(id)) {
        judge.add(id); // it moved while we asked: ask again (after the cooldown)
        continue;
      }
      if (!covered) {
        singles.push(id); // older than the answer reaches: one by one, a few
        continue;
      }
      held.delete(id);
      // its events say it matches, yet it is not among the newer matches: below the page
      if (floor !== -Infinity && fold && !ruledOut(filters, fold)) verdicts.set(id, "below");
    }
    for (const id of singles.slice(0, BATCH_SINGLES)) await judgeOne(id);
    for (const id of singles.slice(BATCH_SINGLES)) held.delete(id); // they ask again with their next change
  }

  /** Refetch one execution and decide: insert it, mark its row, or remember it never will. */
  async function judgeOne(id) {
    const gen = generation;
    const stillWanted = () => !gone && gen === generation;
    metrics.refetches += 1;
    let ex;
    try {
      ex = await api(`/v1/executions/${encodeURIComponent(id)}`);
    } catch {
      held.delete(id);
      return; // gone (retention) or the network: the next event asks again
    }
    if (!stillWanted()) return;
    const verdict = summaryVerdict(filters, ex);
    let match = verdict.match;
    let found = ex;
    const created = parseTime(ex.createdAt);
    if (match && !rows.has(id) && created !== null && created < floor) {
      take(ex); // below the page: remembered as such
      return;
    }
    if (match === "server") {
      let page;
      try {
        page = await api(withQuery("/v1/executions", { ...filters, conversationId: ex.conversationId, limit: 100 }));
      } catch {
        held.delete(id);
        return;
      }
      if (!stillWanted()) return;
      found = (page.executions || []).find((item) => item.executionId === id) || ex;
      match = found !== ex;
    }
    if (!match && verdict.permanent) verdicts.set(id, "never");
    const row = rows.get(id);
    if (row) {
      held.delete(id);
      const was = row.stale;
      row.setServerMismatch(match ? null : `now ${stateOf(ex.status).label}: no longer matches the filters`);
      noteStale(row, was);
    } else if (match) take(found);
    else held.delete(id);
  }

  /** Stuck comes from nothing happening: while the list shows stuck executions, ask again. */
  async function requeryStuck() {
    const gen = generation;
    let page;
    try {
      page = await api(withQuery("/v1/executions", { ...filters, limit: PAGE }));
    } catch {
      return;
    }
    if (gone || gen !== generation) return;
    metrics.requeries += 1;
    const { found } = merge(page);
    if (page.nextCursor) return; // a partial answer cannot say which rows left
    for (const row of rows.values()) {
      if (found.has(row.id)) continue;
      const was = row.stale;
      row.setServerMismatch("no longer stuck: something moved it, or it ended");
      noteStale(row, was);
    }
  }

  // ------------------------------------------------------------- delivery
  async function recountOne(id) {
    if (!rows.has(id)) return;
    let ex;
    try {
      ex = await api(`/v1/executions/${encodeURIComponent(id)}`);
    } catch {
      return; // the next delivery line asks again
    }
    if (!gone) rows.get(id)?.setUndelivered(ex.undelivered);
  }

  async function recountMany(ids) {
    let page;
    try {
      page = await api(withQuery("/v1/executions", { ...filters, limit: Math.min(MAX_PAGE, rows.size + 50) }));
    } catch {
      return;
    }
    if (gone) return;
    const seen = new Set();
    for (const ex of page.executions) {
      seen.add(ex.executionId);
      rows.get(ex.executionId)?.setUndelivered(ex.undelivered);
    }
    const missed = ids.filter((id) => !seen.has(id) && rows.has(id)).slice(0, BATCH_SINGLES);
    await Promise.all(missed.map((id) => recountOne(id)));
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
    if (data.flowId) fold.flowId = data.flowId;
    const context = data.context;
    if (context) {
      if (context.conversationId) fold.conversationId = context.conversationId;
      if (context.contactId) fold.contactId = context.contactId;
      if (context.error) fold.errorHint = true;
      // what makes an execution come to match a filter (filters.eventVerdict)
      if (type === "state") {
        const to = context.metadata?.to || data.status;
        if (to) (fold.reached ||= []).push(to);
      }
    }
    if (data.message === "execution.flow_changed") fold.flowChanged = true;
    if (data.message === "execution.ended" && context?.metadata?.outcome) fold.outcome = context.metadata.outcome;
    if (data.level === "ERROR" || data.level === "CRITICAL") fold.errorHint = true;
    const receipt = data.message === "message.status" ? context?.metadata?.status : null;
    if (UNDELIVERED_LINES.has(data.message) || receipt === "failed") fold.undelivered = true;
    else if (SETTLING_LINES.has(data.message)) fold.settling = true;
    fold.at = at;
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function flush() {
    frame = 0;
    if (gone) return;
    let applied = 0;
    const fresh = [];
    const filtered = narrowed(filters);
    for (const [id, fold] of pending) {
      let row = rows.get(id);
      if (!row && fold.started && !judge.has(id) && acceptsNew(filters, fold)) {
        row = new Row(startedSummary(fold.started), withInput);
        rows.set(id, row);
        watcher.observe(row.tr);
        fresh.push(row);
      }
      if (!row) {
        // not on this page: the counts cover it, unless it came to match the filters
        if (filtered) consider(id, fold);
        continue;
      }
      const was = row.stale;
      row.apply(fold, filters);
      if (fold.undelivered || (fold.settling && row.data.undelivered > 0)) recounts.add(id);
      if (row.stale !== was) noteStale(row, was);
      applied += fold.events;
    }
    pending.clear();
    if (fresh.length) {
      const fragment = document.createDocumentFragment();
      for (let i = fresh.length - 1; i >= 0; i--) fragment.append(fresh[i].tr);
      tbody.prepend(fragment);
      empty.hidden = true;
      metrics.rows = rows.size;
      showSummary();
    }
    metrics.eventsApplied += applied;
    metrics.renders += 1;
  }

  const stream = follow("/v1/events", {
    ...liveIndicator(live),
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
      judge.stop();
      recounts.stop();
      clearInterval(stuckTimer);
      stream.stop();
      loading?.abort();
      cancelAnimationFrame(frame);
      clearInterval(tick);
      watcher.disconnect();
      counts.stop();
      dependencies.stop();
      clearInterval(dependencyWatch);
    },
  };
}

// -------------------------------------------------------------------- rows

/** One table row: its data, its element and direct references to the cells that change. */
class Row {
  constructor(data, withInput = false) {
    this.id = data.executionId;
    this.data = data;
    this.created = parseTime(data.createdAt);
    this.since = parseTime(data.statusSince) ?? parseTime(data.updatedAt) ?? this.created;
    this.updated = parseTime(data.updatedAt) ?? this.created;
    this.clientMismatch = null; // the filters the page can check (status, flow)
    this.serverMismatch = null; // what the server said (stuck, with errors)
    this.stale = false;
    this.badges = statusBadges(data.status, data.outcome);
    this.undelivered = undeliveredFlag(data.undelivered);
    this.depFlag = null; // "circuit open", made the first time it is needed
    this.note = null; // "no longer matches", made the first time it is needed
    this.nodeText = document.createTextNode(data.currentNodeId || "—");
    this.flow = h("td.mono", { text: data.flowId || "" });
    this.age = h("td.num", {});
    this.inState = h("td.num", {});
    const link = h("a.mono", { href: `/debugger/executions/${encodeURIComponent(this.id)}`, title: this.id, text: shortId(this.id) });
    const node = h("td.mono.node", {}, this.nodeText);
    if (data.error) {
      const details = errorDetails(data.error, data.firstError, `err-${this.id}`);
      node.append(details);
      link.setAttribute("aria-describedby", `err-${this.id}`); // the full error, for keyboard and screen readers
    }
    const input = withInput ? inputCell(data.failedStep) : null;
    this.tr = h(
      "tr",
      { dataset: { id: this.id } },
      h("td.id", {}, link),
      h("td.status", {}, this.badges, this.undelivered),
      this.flow,
      h("td", { text: data.institutionId || "" }),
      h("td.mono", { text: maskedContact(data) }),
      input,
      node,
      this.age,
      this.inState,
    );
    this.tr.classList.toggle("ended", isTerminal(data.status));
    this.tr.classList.toggle("has-undelivered", (data.undelivered ?? 0) > 0);
    this.tick(Date.now());
  }

  /** Show how many of its messages are undelivered (0: the flag hides). */
  setUndelivered(count) {
    const n = Number(count) || 0;
    this.data.undelivered = n;
    setUndelivered(this.undelivered, n);
    this.tr.classList.toggle("has-undelivered", n > 0);
  }

  apply(fold, filters) {
    const eventTime = parseTime(fold.at);
    if (eventTime !== null && this.updated !== null && eventTime < this.updated) return; // older than the row
    if (eventTime !== null) this.updated = eventTime;
    const shown = [this.data.status, this.data.outcome];
    if (fold.status && fold.status !== this.data.status) {
      this.data.status = fold.status;
      this.since = parseTime(fold.statusAt) ?? eventTime ?? Date.now();
      this.tr.classList.toggle("ended", isTerminal(fold.status));
      // what it waited for is the past now; the next reload says what it waits for
      this.data.waitingForDependency = null;
      this.showDependency(null);
      // active: no outcome (an operator's retry revives a failed one); ended: known from its
      // end line (execution.ended), undefined until then
      this.data.outcome = isTerminal(fold.status) ? undefined : null;
    }
    if (fold.outcome) this.data.outcome = fold.outcome;
    if (fold.undelivered && !(this.data.undelivered > 0)) this.setUndelivered(1); // the recount says how many
    if (shown[0] !== this.data.status || shown[1] !== this.data.outcome) setStatusBadges(this.badges, this.data.status, this.data.outcome);
    if (fold.nodeId && fold.nodeId !== this.data.currentNodeId) {
      this.data.currentNodeId = fold.nodeId;
      this.nodeText.nodeValue = fold.nodeId;
    }
    if (fold.flowId && fold.flowId !== this.data.flowId) {
      this.data.flowId = fold.flowId; // a jump node moved it into another flow
      setText(this.flow, fold.flowId);
    }
    let why = null;
    if (filters.status && this.data.status !== filters.status) why = `now ${stateOf(this.data.status).label}: no longer matches the filters`;
    else if (filters.outcome && this.data.outcome !== undefined && !outcomeMatches(filters.outcome, this.data.outcome))
      why = `now ${stateOf(this.data.status).label}: no longer matches the filters`;
    else if (filters.flowId && !flowMatches(filters.flowId, this.data.flowId)) why = `now in flow ${this.data.flowId}: no longer matches the filters`;
    if (why !== this.clientMismatch) {
      this.clientMismatch = why;
      this.showMismatch();
    }
  }

  setServerMismatch(why) {
    if (why === this.serverMismatch) return;
    this.serverMismatch = why;
    this.showMismatch();
  }

  showMismatch() {
    const why = this.clientMismatch || this.serverMismatch;
    this.stale = Boolean(why);
    this.tr.classList.toggle("stale", this.stale);
    if (!this.note && !why) return;
    this.note ??= this.badges.parentNode.appendChild(h("span.nomatch", { text: "no longer matches" }));
    this.note.hidden = !this.stale;
    if (why) this.note.title = why;
    else this.note.removeAttribute("title");
  }

  /** The dependency this execution waits for, if it does. */
  dependency() {
    return this.data.waitingForDependency || null;
  }

  /** Flag the row when the dependency it waits for has its breaker open (null: unflag). */
  showDependency(states) {
    const name = this.dependency();
    if (!this.depFlag) {
      if (!name || !states?.isOpen(name)) return;
      this.depFlag = dependencyFlag(name);
      this.badges.after(this.depFlag);
    }
    updateDependencyFlag(this.depFlag, name, states);
  }

  tick(now) {
    setText(this.age, ago(this.created === null ? null : now - this.created));
    setText(this.inState, ago(this.since === null ? null : now - this.since));
  }
}

/** The error an execution holds, as a one-line summary (type and the start of
 * the message, cut to the cell) that opens to the whole text, also from the keyboard.
 * When its trouble started with another error (a 500 before "circuit open"), the
 * summary starts with that one, and the whole text says both. */
function errorDetails(error, first, id) {
  const object = typeof error === "object" && error !== null;
  const type = (object && error.type) || "error";
  const message = object ? error.message || (error.code ? String(error.code) : "") : String(error);
  const started = first && !sameError(first, error) ? first : null;
  const full = errorSummary(error) || "error";
  const summary = started
    ? h("summary", { title: `started with: ${errorSummary(started)}; last: ${full}` }, h("span.err-type", { text: "started with" }), `: ${started.message || started.type || ""} · last: ${message || type}`)
    : h("summary", { title: full }, h("span.err-type", { text: type }), message ? `: ${message}` : "");
  return h(
    "details.err",
    {},
    summary,
    h("p.err-full", { id, text: started ? `Started with: ${errorSummary(started)}. Last error: ${full}` : `Error: ${full}` }),
  );
}

/** The failed step's input as one line (the request for a call), its error and time in the title. */
function inputCell(step) {
  if (!step) return h("td.mono.input", {}, h("span.muted", { text: "—" }));
  const text = failingInput(step);
  const error = errorSummary(step.error);
  const title = [text, `step ${step.seq ?? "?"} at ${step.nodeId || "?"}`, step.at ? clock(step.at) : "", error].filter(Boolean).join(" · ");
  return h("td.mono.input", { title }, shortInput(text));
}

/** Whether row `a` comes before row `b`: newest first, as the server pages them. */
function newer(a, b) {
  if (a.created !== b.created) return (a.created ?? 0) > (b.created ?? 0);
  return a.id > b.id;
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
    outcome: null,
    error: null,
  };
}
