// The list's filters: read from and written to the URL query (a filtered view
// can be shared and survives a reload), shown as a form, and the rules that say
// whether an execution the page hears about belongs in a filtered list:
//  - acceptsNew: a just-started execution whose own first lines settle it;
//  - eventVerdict: from its events alone, whether an execution not in the table
//    may just have come to match ("maybe": worth a refetch) or not ("no"). The
//    event carries status, flow and institution as they are now; conversation and
//    contact come masked, so they can only rule an execution out;
//  - summaryVerdict: from the execution itself (GET /v1/executions/{id}),
//    whether it matches, or that only the server can tell ("server": stuck, and a
//    step that failed earlier for with-errors and the failed-step filters).
//
// The failed-step filters (errorNode, errorKind, errorStatus, errorDependency,
// since) come from a link, an error group's or an alert's evidence, not from the
// form: the form carries them as hidden fields and says in words what they ask,
// with a link back to the list without them.

import { api, withQuery } from "./api.js";
import { clock, h } from "./dom.js";
import { isTerminal, OUTCOMES, outcomeOf, STATES } from "./status.js";

/** what a failed step must match; set by links, kept by the form as hidden fields */
export const STEP_FILTERS = ["errorNode", "errorKind", "errorStatus", "errorDependency", "since"];
export const FILTERS = ["status", "outcome", "flowId", "institutionId", "conversationId", "contactId", "stuck", "withErrors", ...STEP_FILTERS];
/** the longest value a filter read from the URL may have (the API's own bound is 200) */
const MAX_VALUE = 200;

export function readFilters() {
  const query = new URLSearchParams(location.search);
  const out = {};
  for (const name of FILTERS) out[name] = (query.get(name) || "").slice(0, MAX_VALUE);
  out.stuck = out.stuck === "true" ? "true" : "";
  out.withErrors = out.withErrors === "true" ? "true" : "";
  return out;
}

/** Whether the list asks for executions with a failed step like the one named. */
export function stepFiltered(filters) {
  return STEP_FILTERS.some((name) => filters[name]);
}

/** Whether an execution's outcome is the one asked for. */
export function outcomeMatches(wanted, outcome) {
  if (!wanted) return true;
  return outcomeOf(wanted).id === outcomeOf(outcome || "").id;
}

export function formFilters(form) {
  const data = new FormData(form);
  const out = {};
  for (const name of FILTERS) out[name] = String(data.get(name) || "").trim();
  out.stuck = data.get("stuck") ? "true" : "";
  out.withErrors = data.get("withErrors") ? "true" : "";
  return out;
}

export function sameFilters(a, b) {
  return FILTERS.every((name) => (a[name] || "") === (b[name] || ""));
}

/** Whether any filter narrows the list (an institution alone is applied to every event). */
export function narrowed(filters) {
  return Boolean(
    filters.status || filters.outcome || filters.flowId || filters.conversationId || filters.contactId || filters.stuck || filters.withErrors || stepFiltered(filters),
  );
}

/** A stored flow id (`acme/greet`, or `greet` for a shared flow) against the filter's value. */
export function flowMatches(wanted, flowId) {
  if (!wanted) return true;
  const flow = flowId || "";
  if (flow === wanted) return true;
  return flow.split("/").pop() === wanted.split("/").pop() && (!flow.includes("/") || !wanted.includes("/"));
}

/**
 * Whether `raw` could be the value the server showed as `shown`: masking replaces
 * characters with `*` (`***********21`, `a***@***.com`) and leaves others as they are.
 */
export function maskedCouldBe(shown, raw) {
  if (!shown.includes("*")) return shown === raw;
  const pattern = shown
    .split(/\*+/)
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".+");
  return new RegExp(`^${pattern}$`, "s").test(raw);
}

/** Whether a just-started execution (its folded first lines) surely belongs in the list. */
export function acceptsNew(filters, fold) {
  // a new execution has no outcome and no failed step yet
  if (filters.stuck || filters.withErrors || filters.contactId || filters.outcome || stepFiltered(filters)) return false;
  const line = fold.started;
  if (filters.status && (fold.status || line.status) !== filters.status) return false;
  if (filters.conversationId && line.context?.conversationId !== filters.conversationId) return false;
  if (filters.flowId && !flowMatches(filters.flowId, fold.flowId || line.flowId)) return false;
  return true;
}

/** Whether an execution's latest events (folded) rule out that it matches the filters now. */
export function ruledOut(filters, fold) {
  if (filters.status && fold.status && fold.status !== filters.status) return true;
  if (filters.outcome && fold.status && !isTerminal(fold.status)) return true; // no outcome while active
  if (filters.flowId && fold.flowId && !flowMatches(filters.flowId, fold.flowId)) return true;
  if (filters.conversationId && fold.conversationId && !maskedCouldBe(fold.conversationId, filters.conversationId)) return true;
  if (filters.contactId && fold.contactId && !maskedCouldBe(fold.contactId, filters.contactId)) return true;
  return false;
}

/**
 * An execution that is not in the table, from its latest events (folded): "maybe"
 * when they show it may have just come to match (worth a refetch), else "no".
 * Coming to match is a change the trail records: it started, it entered the
 * filter's state (a state line's `to`), a jump moved it into another flow, or an
 * error was logged; its institution, conversation and contact never change. A
 * line that only shows it already in the filter's state says nothing new: such
 * an execution was below the loaded page (or is already in the table).
 * Stuck is left to the periodic re-query: an execution becomes stuck when
 * nothing happens to it, which no event announces.
 */
export function eventVerdict(filters, fold) {
  if (filters.stuck || ruledOut(filters, fold)) return "no";
  if (fold.started) return "maybe";
  if (filters.status && fold.reached?.includes(filters.status)) return "maybe";
  if (filters.flowId && fold.flowChanged) return "maybe";
  if (filters.outcome && fold.reached?.some(isTerminal)) return "maybe";
  if ((filters.withErrors || stepFiltered(filters)) && fold.errorHint) return "maybe";
  return "no";
}

/**
 * An execution as GET /v1/executions/{id} answers it against the filters:
 * {match: true | false | "server", permanent} (permanent: it can never match,
 * its institution, conversation or contact are not the filter's).
 */
export function summaryVerdict(filters, ex) {
  const never = { match: false, permanent: true };
  if (filters.institutionId && ex.institutionId !== filters.institutionId) return never;
  if (filters.conversationId && ex.conversationId !== filters.conversationId) return never;
  if (filters.contactId && ex.contactId !== filters.contactId) return never;
  if (filters.flowId && !flowMatches(filters.flowId, ex.flowId)) return { match: false };
  if (filters.status && ex.status !== filters.status) return { match: false };
  if (filters.outcome && !outcomeMatches(filters.outcome, ex.outcome)) return { match: false };
  if (filters.stuck) return { match: "server" };
  if (stepFiltered(filters)) return { match: "server" }; // which step failed, and its input
  if (filters.withErrors && !ex.error) return { match: "server" }; // a step that failed on the way?
  return { match: true };
}

/** The filter form; `admin` keys may pick an institution, others see theirs. */
export function filterForm(filters, { admin, me }) {
  const status = h(
    "select",
    { name: "status", id: "f-status" },
    h("option", { value: "", text: "any state" }),
    STATES.map((s) => h("option", { value: s.id, text: s.label, selected: filters.status === s.id })),
  );
  const outcome = h(
    "select",
    { name: "outcome", id: "f-outcome" },
    h("option", { value: "", text: "any outcome" }),
    OUTCOMES.map((o) => h("option", { value: o.id, text: o.label, title: o.title, selected: filters.outcome === o.id })),
  );
  const flow = flowSelect("f-flow", filters.flowId);
  const text = (name, label, placeholder, help = "") =>
    h(
      "label.field.inline",
      { class: `field inline f-${name}` },
      h("span", { text: label }),
      h("input", { name, type: "search", value: filters[name], placeholder, title: help || placeholder, autocomplete: "off", spellcheck: "false" }),
    );
  const check = (name, label, hint) =>
    h(
      "label.check",
      { title: hint },
      h("input", { type: "checkbox", name, value: "true", checked: filters[name] === "true" }),
      h("span", { text: label }),
    );
  const institution = admin
    ? text("institutionId", "Institution", "any")
    : h(
        "span.field.inline.fixed",
        { title: "a key sees its own institution only" },
        h("span", { text: "Institution" }),
        h("b", { text: me.institutionId || "" }),
      );
  return h(
    "form.filters",
    { role: "search", "aria-label": "Filter executions" },
    h("label.field.inline", { for: "f-status" }, h("span", { text: "Status" }), status),
    h("label.field.inline", { for: "f-outcome", title: "how it ended: escalated, expired, failed…" }, h("span", { text: "Outcome" }), outcome),
    h("label.field.inline", { for: "f-flow" }, h("span", { text: "Flow" }), flow),
    institution,
    text("conversationId", "Conversation", "exact id"),
    text(
      "contactId",
      "Contact",
      "the contact's full id",
      "The contact's full id (e.g. 5511987654321), not the masked one the list shows: the filter compares whole ids.",
    ),
    check("stuck", "Stuck", "active executions past their due time that nothing is moving on"),
    check("withErrors", "With errors", "an error now, or any failed step"),
    STEP_FILTERS.filter((name) => filters[name]).map((name) => h("input", { type: "hidden", name, value: filters[name] })),
    stepFilterNote(filters),
  );
}

/** A select of the key's flows (`name="flowId"`), `selected` kept even before they load. */
export function flowSelect(id, selected) {
  const flow = h("select", { name: "flowId", id }, h("option", { value: "", text: "any flow" }));
  if (selected) flow.append(h("option", { value: selected, text: selected, selected: true }));
  api("/v1/flows")
    .then((answer) => {
      for (const item of answer.flows || []) {
        if (item.flowId !== selected) flow.append(h("option", { value: item.flowId, text: item.flowId }));
      }
    })
    .catch(() => {}); // the select still offers "any flow"
  return flow;
}

/** The failed-step filters in words, with the way back to the list without them. */
function stepFilterNote(filters) {
  if (!stepFiltered(filters)) return null;
  const parts = [];
  if (filters.errorNode) parts.push(["node", filters.errorNode]);
  if (filters.errorDependency) parts.push(["dependency", filters.errorDependency]);
  if (filters.errorKind) parts.push(["kind", filters.errorKind]);
  if (filters.errorStatus) parts.push(["status", filters.errorStatus]);
  if (filters.since) parts.push(["since", sinceText(filters.since)]);
  const without = { ...filters };
  for (const name of STEP_FILTERS) without[name] = "";
  return h(
    "p.step-filter",
    {},
    h("span", { text: "With a failed step: " }),
    parts.map(([what, value]) => h("span.step-term", {}, `${what} `, h("b.mono", { text: value }))),
    h("a", { href: withQuery("/debugger/", without), text: "show every execution" }),
  );
}

/** A `since` (unix seconds, as the API takes it) as a local time; anything else as given. */
export function sinceText(since) {
  const seconds = Number(since);
  if (!Number.isFinite(seconds) || seconds <= 0) return String(since);
  return clock(new Date(seconds * 1000).toISOString()).replace(/\.000$/, "");
}

export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
