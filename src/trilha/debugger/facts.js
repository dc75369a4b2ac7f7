// The execution's title block: its id, a state badge and its facts (flow,
// tenant, conversation, masked contact, current node, what it waits for, which
// worker holds it or since when it is due for one, age, time in state). Built
// once; update() writes only changed text and tick() moves the clocks every
// second without touching anything else.
//
// The worker fact is what tells "stuck" from "busy": from the summary's
// leaseOwner/leaseExpiresAt (a worker holds it until then) and wakeAt (when a
// worker should take it; null: nothing is due). Due for more than
// OVERDUE_MS with no lease is flagged, there and in a warning line under the
// facts: no worker is taking the work.
//
// The error line keeps the error that started the execution's trouble beside the
// last one ("started with: GET …/91234 answered 500; last: circuit open"): the
// last alone hides the cause behind its consequence. An execution waiting for a
// dependency whose circuit breaker is open says so, with why the breaker opened.
// One with undelivered messages (dead, reported failed, pending past due) is
// flagged with how many, and a line says where to see them. A conversation a person
// holds (a 'wait' handoff: paused, waiting for `human`) is flagged "with a person"
// with the queue, and its wait says when the bot takes it back by itself, if ever.

import { setUndelivered, undeliveredFlag } from "./delivery.js";
import { dependencyFlag, updateDependencyFlag } from "./dependencies.js";
import { ago, clock, h, maskedContact, parseTime, setText } from "./dom.js";
import { errorSummary, sameError } from "./errors.js";
import { isTerminal, outcomeOf, setStatusBadges, stateOf, statusBadges } from "./status.js";

/** Due for a worker longer than this with nobody holding it: flagged (the sweeper's grace). */
export const OVERDUE_MS = 30000;

/** The title block of `ex`: {el, update(ex), tick(now)}. */
export function executionHeader(ex) {
  const stateBadges = statusBadges(ex.status, ex.outcome);
  const facts = new Map();
  const dl = h("dl.facts");
  const fact = (key, label, mono = false) => {
    const dd = h(`dd${mono ? ".mono" : ""}`);
    dl.append(h("div.fact", { dataset: { fact: key } }, h("dt", { text: label }), dd));
    facts.set(key, dd);
  };
  fact("flow", "Flow", true);
  fact("institution", "Institution");
  fact("conversation", "Conversation", true);
  fact("contact", "Contact", true);
  fact("node", "Current node", true);
  fact("waiting", "Waiting for");
  fact("worker", "Worker");
  fact("age", "Age");
  fact("inState", "In state");
  fact("attempts", "Attempts / steps");
  fact("outcome", "Outcome");
  const firstError = h("span.first-error");
  const lastError = h("span.last-error");
  const error = h("p.exec-error", { role: "note", hidden: true }, firstError, lastError);
  const stuck = h("p.exec-stuck", { role: "note", hidden: true });
  const depFlag = dependencyFlag("");
  const depNote = h("p.exec-dep", { role: "note", hidden: true });
  const undelivered = undeliveredFlag(ex.undelivered);
  const undeliveredNote = h("p.exec-undelivered", { role: "note", hidden: true });
  const heldLabel = h("span.label");
  const heldFlag = h("span.held-flag", { hidden: true }, h("span.glyph", { "aria-hidden": "true", text: "☻" }), heldLabel);
  const el = h(
    "header.exec-head",
    {},
    h("div.title-row", {}, h("h1", {}, h("span.muted", { text: "Execution " }), h("code.exec-id", { text: ex.executionId })), stateBadges, heldFlag, depFlag, undelivered),
    dl,
    error,
    depNote,
    undeliveredNote,
    stuck,
  );
  let dependency = null;
  let created = null;
  let since = null;
  let lastStatus = ex.status;
  let waiting = "";
  let due = null;
  let paused = false;
  let held = null; // who holds the conversation (heldBy), while a person does
  let ended = false;
  let wake = null;
  let leaseOwner = null;
  let leaseUntil = null;
  /** A time (ms) as the facts show it: the clock to the second. */
  const at = (ms) => clock(new Date(ms).toISOString()).replace(/\.\d{3}$/, "");

  /** Who holds it, or since when it waits for someone to: {text, overdue}. */
  function workerText(now) {
    if (ended) return { text: "none: it ended", overdue: false };
    if (leaseOwner && leaseUntil !== null && leaseUntil >= now)
      return { text: `held by worker ${leaseOwner} until ${at(leaseUntil)} (${ago(leaseUntil - now)} left)`, overdue: false };
    const lapsed = leaseOwner && leaseUntil !== null ? `worker ${leaseOwner}'s lease ran out ${ago(now - leaseUntil)} ago; ` : "";
    const waitsFor = held ? " (a person holds the conversation)" : paused ? " (paused: waits for an operator)" : "";
    if (wake === null) return { text: `${lapsed}not due for a worker${waitsFor}`, overdue: false };
    if (wake > now) return { text: `${lapsed}due for a worker at ${at(wake)} (in ${ago(wake - now)})`, overdue: false };
    const overdue = now - wake > OVERDUE_MS;
    const since = `${lapsed}due for a worker since ${at(wake)} (${ago(now - wake)} ago)`;
    return { text: overdue ? `${since}: no worker has taken it` : since, overdue };
  }

  return {
    el,
    update(next) {
      setStatusBadges(stateBadges, next.status, next.outcome);
      setText(facts.get("flow"), `${next.flowId} v${next.flowVersion}`);
      setText(facts.get("institution"), next.institutionId || "");
      setText(facts.get("conversation"), next.conversationId || "");
      setText(facts.get("contact"), maskedContact(next));
      setText(facts.get("node"), next.currentNodeId || "—");
      held = next.heldBy || null;
      paused = next.status === "paused" && !held;
      ended = isTerminal(next.status);
      waiting = next.waitingFor || "";
      dependency = next.waitingForDependency || null;
      if (dependency && waiting === "dependency") waiting = `dependency ${dependency}`;
      // a wait_event node's wait: the event a signal must name (trilha signal ID EVENT)
      if (waiting.startsWith("event:")) waiting = `event ${waiting.slice("event:".length)} (a signal)`;
      if (paused) waiting = `${waiting || "operator"} (paused${next.pausedFrom ? ` from ${stateOf(next.pausedFrom).label}` : ""}`;
      if (held) waiting = `a person, queue ${held.queue || "?"}${held.since ? ` (since ${clock(held.since)})` : ""}`;
      heldFlag.hidden = !held;
      setText(heldLabel, held ? `with a person · ${held.queue || "?"}` : "");
      heldFlag.title = held ? `A person of queue ${held.queue || "?"} holds the conversation${held.reason ? `: ${held.reason}` : ""}. Hand it back to let the bot go on.` : "";
      due = parseTime(next.dueAt);
      facts.get("waiting").title = next.dueAt ? `${paused ? "its wait was due" : "due"} ${clock(next.dueAt)}` : "";
      wake = parseTime(next.wakeAt);
      leaseOwner = next.leaseOwner || null;
      leaseUntil = parseTime(next.leaseExpiresAt);
      setText(facts.get("attempts"), `${next.attempts ?? 0} / ${next.steps ?? 0}`);
      setText(facts.get("outcome"), next.outcome ? outcomeOf(next.outcome).label : next.endedAt ? "ended" : "—");
      created = parseTime(next.createdAt);
      if (next.statusSince) since = parseTime(next.statusSince);
      else if (since === null || next.status !== lastStatus) since = parseTime(next.updatedAt) ?? created;
      lastStatus = next.status;
      const err = next.error;
      const first = next.firstError && !sameError(next.firstError, err) ? next.firstError : null;
      error.hidden = !err && !first;
      setText(firstError, first ? `Started with: ${errorSummary(first)}` : "");
      firstError.hidden = !first;
      setText(lastError, err ? `${first ? "Last" : "Error"}: ${errorSummary(err)}` : "");
      lastError.hidden = !err;
      const lost = Number(next.undelivered) || 0;
      setUndelivered(undelivered, lost);
      undeliveredNote.hidden = lost <= 0;
      setText(
        undeliveredNote,
        lost > 0 ? `${lost === 1 ? "A message" : `${lost} messages`} to the contact ${lost === 1 ? "was" : "were"} not delivered: see the Conversation tab.` : "",
      );
      this.tick(Date.now());
    },
    /** The dependency it waits for, if any (what the page asks the breakers about). */
    dependency() {
      return dependency;
    },
    /** Flag a wait for a dependency whose breaker is open, from `states` (DependencyStates). */
    showDependency(states) {
      updateDependencyFlag(depFlag, dependency, states);
      const open = !depFlag.hidden;
      depNote.hidden = !open;
      setText(depNote, open ? `${states.describe(dependency)} This execution waits for it to close.` : "");
    },
    tick(now) {
      setText(facts.get("age"), ago(created === null ? null : now - created));
      setText(facts.get("inState"), ago(since === null ? null : now - since));
      let text = waiting || "—";
      if (paused) {
        // a paused execution's clock is stopped: say what its wait would have done
        if (due !== null) text += due >= now ? `; its wait would have ended in ${ago(due - now)}` : `; its wait would have ended ${ago(now - due)} ago`;
        text += ")";
      } else if (held) {
        if (due !== null) text += due >= now ? ` · the bot takes it back in ${ago(due - now)}` : ` · the bot takes it back now`;
      } else if (waiting && due !== null) text += due >= now ? ` · due in ${ago(due - now)}` : ` · overdue ${ago(now - due)}`;
      setText(facts.get("waiting"), text);
      const worker = workerText(now);
      setText(facts.get("worker"), worker.text);
      facts.get("worker").classList.toggle("warn", worker.overdue);
      stuck.hidden = !worker.overdue;
      if (worker.overdue)
        setText(stuck, `No worker has taken this execution: it has been due for one for ${ago(now - wake)}. Is a worker running against this store?`);
    },
  };
}
