// The execution's title block: its id, a state badge and its facts (flow,
// tenant, conversation, masked contact, current node, what it waits for, age,
// time in state). Built once; update() writes only changed text and tick()
// moves the clocks every second without touching anything else.

import { ago, clock, h, maskedContact, parseTime, setText } from "./dom.js";
import { badge, setBadge } from "./status.js";

/** The title block of `ex`: {el, update(ex), tick(now)}. */
export function executionHeader(ex) {
  const stateBadge = badge(ex.status);
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
  fact("age", "Age");
  fact("inState", "In state");
  fact("attempts", "Attempts / steps");
  fact("outcome", "Outcome");
  const error = h("p.exec-error", { role: "note", hidden: true });
  const el = h(
    "header.exec-head",
    {},
    h("div.title-row", {}, h("h1", {}, h("span.muted", { text: "Execution " }), h("code.exec-id", { text: ex.executionId })), stateBadge),
    dl,
    error,
  );
  let created = null;
  let since = null;
  let lastStatus = ex.status;
  let waiting = "";
  let due = null;
  return {
    el,
    update(next) {
      setBadge(stateBadge, next.status);
      setText(facts.get("flow"), `${next.flowId} v${next.flowVersion}`);
      setText(facts.get("institution"), next.institutionId || "");
      setText(facts.get("conversation"), next.conversationId || "");
      setText(facts.get("contact"), maskedContact(next));
      setText(facts.get("node"), next.currentNodeId || "—");
      waiting = next.waitingFor || (next.pausedFrom ? `operator (paused from ${next.pausedFrom})` : "");
      due = parseTime(next.dueAt);
      facts.get("waiting").title = next.dueAt ? `due ${clock(next.dueAt)}` : "";
      setText(facts.get("attempts"), `${next.attempts ?? 0} / ${next.steps ?? 0}`);
      setText(facts.get("outcome"), next.outcome || (next.endedAt ? "ended" : "—"));
      created = parseTime(next.createdAt);
      if (next.statusSince) since = parseTime(next.statusSince);
      else if (since === null || next.status !== lastStatus) since = parseTime(next.updatedAt) ?? created;
      lastStatus = next.status;
      const err = next.error;
      error.hidden = !err;
      error.textContent = err ? `Error: ${[err.type, err.code, err.message].filter(Boolean).join(" · ")}` : "";
      this.tick(Date.now());
    },
    tick(now) {
      setText(facts.get("age"), ago(created === null ? null : now - created));
      setText(facts.get("inState"), ago(since === null ? null : now - since));
      let text = waiting || "—";
      if (waiting && due !== null) text += due >= now ? ` · due in ${ago(due - now)}` : ` · overdue ${ago(now - due)}`;
      setText(facts.get("waiting"), text);
    },
  };
}
